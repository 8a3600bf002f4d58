"""GIFT's per-token target against the exact Gibbs policy (docs/theory.md sections 3 and 3b).

Along a gold sequence y*, with p_t = pi0(y*_t | s*_t):

    GIFT target          q_t(a) ∝ pi0~(a | s*_t) exp(beta 1[a = y*_t]),  pi0~ = (1 - smoothing) pi0 + smoothing / V
    exact gain           g_t = log(1 + (e^eta - 1) prod_{u > t} p_u)     (reward eta 1[y = y*])
    sequence-consistent  q_t with beta replaced by g_t: the exact Gibbs policy on the gold path
    mixture weight       q_t = (1 - w_t) pi0 + w_t onehot,  w_t = (e^beta - 1) p_t / (1 + (e^beta - 1) p_t)

The exact Gibbs policy is pi0 off the gold path, so a token-level target defines a full policy:
the target on gold prefixes, pi0 elsewhere (`gold_path_policy`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from giftlab.theory._checks import check_beta, check_probs
from giftlab.theory.bandit import entropy, gibbs_from_logp, kl_divergence
from giftlab.theory.tabular import TabularLM, sequence_gibbs

__all__ = [
    "compare_sequence_distributions",
    "exact_gains",
    "exact_gold_gibbs",
    "gift_target",
    "gold_index",
    "gold_path",
    "gold_path_policy",
    "gold_reward",
    "log_expm1",
    "gate_weight",
    "sequence_consistent_gift_target",
    "smoothed_base",
]


def log_expm1(beta) -> np.ndarray:
    """log(e^beta - 1) without overflow: beta + log1p(-e^-beta); -inf at 0, inf at inf."""
    b = np.asarray(beta, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        small = np.log(np.expm1(np.minimum(b, 1.0)))
        large = b + np.log1p(-np.exp(-np.maximum(b, 1.0)))
    return np.where(b <= 1.0, small, large)


def smoothed_base(base_probs, smoothing: float = 0.0) -> np.ndarray:
    """pi0~ = (1 - smoothing) pi0 + smoothing / V over the last axis."""
    s = float(smoothing)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
    p0 = check_probs(base_probs, "base_probs")
    return (1.0 - s) * p0 + s / p0.shape[-1]


def _check_gold(gold, n_rows: int, vocab: int) -> np.ndarray:
    g = np.asarray(gold)
    if g.shape != (n_rows,) or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(
            f"gold must be ({n_rows},) integer token ids, got shape {g.shape}, {g.dtype}"
        )
    if np.any((g < 0) | (g >= vocab)):
        raise ValueError(f"gold has a token outside [0, {vocab}): {g.tolist()}")
    return g


def _onehot(gold: np.ndarray, vocab: int) -> np.ndarray:
    return (np.arange(vocab) == gold[:, None]).astype(np.float64)


def gift_target(base_probs, gold, beta, smoothing: float = 0.0) -> np.ndarray:
    """q_t = softmax(log pi0~(. | s*_t) + beta onehot(y*_t)) at each gold position.

    beta = 0, smoothing = 0: pi0.   beta -> inf: onehot(y*_t) (SFT), when pi0~(y*_t) > 0.

    Args:
        base_probs: (L, V) base distribution at each gold prefix.  gold: (L,) token ids.
        beta: in [0, inf].  smoothing: in [0, 1].
    Returns:
        (L, V) target probabilities.
    """
    beta = check_beta(beta)
    p = smoothed_base(base_probs, smoothing)
    g = _check_gold(gold, p.shape[0], p.shape[1])
    with np.errstate(divide="ignore"):
        return gibbs_from_logp(np.log(p), _onehot(g, p.shape[1]), beta)


def gate_weight(base_gold_prob, beta) -> np.ndarray:
    """w_t = (e^beta - 1) p_t / (1 + (e^beta - 1) p_t) = sigmoid(log(e^beta - 1) + log p_t).

    q_t = (1 - w_t) pi0 + w_t onehot(y*_t).  w_t = 1/2 at beta = log(1 + 1/p_t).
    p_t = 0: w_t = 0 (support is preserved).  beta = inf: 1 for p_t > 0.
    """
    beta = check_beta(beta)
    p = np.asarray(base_gold_prob, dtype=np.float64)
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError("base_gold_prob must be probabilities in [0, 1]")
    if np.isinf(beta):
        return np.where(p > 0, 1.0, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(p > 0, expit(log_expm1(beta) + np.log(p)), 0.0)


def exact_gains(gold_logp, eta) -> np.ndarray:
    """g_t = log(1 + (e^eta - 1) prod_{u > t} p_u), from the gold tokens' base log-probabilities.

    g_t <= eta, with equality at the last token (empty product). eta = inf: inf where the suffix
    has positive base mass.
    Naive equivalent: [log(1 + expm1(eta) * exp(sum(gold_logp[t+1:]))) for t].

    Args:
        gold_logp: (L,) log pi0(y*_t | s*_t), -inf allowed.  eta: sequence reward scale in [0, inf].
    Returns:
        (L,) gains.
    """
    eta = check_beta(eta, "eta")
    lp = np.asarray(gold_logp, dtype=np.float64)
    if lp.ndim != 1 or np.any(lp > 0) or np.any(np.isnan(lp)):
        raise ValueError("gold_logp must be a (L,) vector of log-probabilities (<= 0)")
    suffix = np.concatenate([np.cumsum(lp[::-1])[::-1][1:], [0.0]])  # sum_{u > t} log p_u
    if np.isinf(eta):
        return np.where(suffix > -np.inf, np.inf, 0.0)
    if eta < 700.0:  # e^eta - 1 is representable: log1p keeps full relative precision
        return np.log1p(np.expm1(eta) * np.exp(suffix))
    return np.logaddexp(0.0, log_expm1(eta) + suffix)


def sequence_consistent_gift_target(base_probs, gold, eta, smoothing: float = 0.0) -> np.ndarray:
    """GIFT with the exact per-token gains: q_t ∝ pi0~(. | s*_t) exp(g_t onehot(y*_t)).

    With smoothing = 0 this is the exact Gibbs policy pi0 exp(eta 1[y = y*]) / Z on the gold path.

    Args:
        base_probs: (L, V) at the gold prefixes.  gold: (L,).  eta: in [0, inf].  smoothing: [0, 1].
    Returns:
        (L, V) target probabilities.
    """
    eta = check_beta(eta, "eta")
    p = smoothed_base(base_probs, smoothing)
    g = _check_gold(gold, p.shape[0], p.shape[1])
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    gains = exact_gains(log_p[np.arange(len(g)), g], eta)
    onehot = _onehot(g, p.shape[1])
    finite = np.isfinite(gains)
    out = np.empty_like(p)
    out[finite] = gibbs_from_logp(log_p[finite], gains[finite, None] * onehot[finite], 1.0)
    out[~finite] = gibbs_from_logp(log_p[~finite], onehot[~finite], np.inf)
    return out


# -- on a TabularLM ---------------------------------------------------------------------------


def gold_path(lm: TabularLM, gold):
    """(prefix indices (L,), base probabilities at the gold prefixes (L, V), gold tokens (L,))."""
    tokens = np.asarray([int(a) for a in np.asarray(gold).ravel() if int(a) != -1])
    idx = np.asarray(lm.prefix_indices(tokens))
    if lm.end_token is not None and len(tokens) < lm.horizon and tokens[-1] != lm.end_token:
        raise ValueError(
            "gold must be a complete sequence: end it with the end token or give T tokens"
        )
    if lm.end_token is None and len(tokens) != lm.horizon:
        raise ValueError(f"gold must have horizon = {lm.horizon} tokens, got {len(tokens)}")
    base = np.stack([lm.probs[d][i] for d, i in enumerate(idx)])
    return idx, base, tokens


def gold_index(lm: TabularLM, gold) -> int:
    """The row of lm.sequences() equal to `gold` (-1 padding optional), or ValueError."""
    row = np.full(lm.horizon, -1)
    tokens = np.asarray([int(a) for a in np.asarray(gold).ravel() if int(a) != -1])
    row[: len(tokens)] = tokens
    hit = np.flatnonzero(np.all(lm.sequences() == row, axis=1))
    if len(hit) != 1:
        raise ValueError(f"gold {tokens.tolist()} is not a complete sequence of this TabularLM")
    return int(hit[0])


def gold_reward(lm: TabularLM, gold, eta: float = 1.0) -> np.ndarray:
    """(N,) reward eta 1[y = y*] aligned with lm.sequences()."""
    r = np.zeros(lm.n_sequences)
    r[gold_index(lm, gold)] = eta
    return r


def gold_path_policy(lm: TabularLM, gold, targets) -> list[np.ndarray]:
    """Per-depth tables: `targets[t]` at the gold prefix of depth t, pi0 at every other prefix."""
    idx, _, _ = gold_path(lm, gold)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape != (len(idx), lm.vocab_size):
        raise ValueError(
            f"targets must have shape {(len(idx), lm.vocab_size)}, got {targets.shape}"
        )
    tables = [p.copy() for p in lm.probs]
    for d, i in enumerate(idx):
        tables[d][i] = targets[d]
    return tables


def compare_sequence_distributions(p, q, gold_index: int) -> dict[str, float]:
    """Gold mass, KL both ways, total variation and entropies of two (N,) sequence distributions.

    Conventionally p is the distribution a token-level target induces and q the exact Gibbs one.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return {
        "gold_mass": float(p[gold_index]),
        "gold_mass_exact": float(q[gold_index]),
        "kl_to_exact": float(kl_divergence(p, q)),
        "kl_from_exact": float(kl_divergence(q, p)),
        "tv": float(0.5 * np.abs(p - q).sum()),
        "entropy": float(entropy(p)),
        "entropy_exact": float(entropy(q)),
    }


def exact_gold_gibbs(lm: TabularLM, gold, eta) -> np.ndarray:
    """(N,) exact sequence Gibbs policy for the reward eta 1[y = y*]."""
    return sequence_gibbs(lm, gold_reward(lm, gold, 1.0), eta)
