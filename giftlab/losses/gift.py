"""GIFT: cross-entropy against the finite-temperature target (docs/theory.md sections 3, 3b, 4).

Per response token, with reference logits z_ref, base pi0~ = (1 - smoothing) softmax(z_ref) + smoothing / V,
p_y = pi0~(y) and the policy's logits z:

    q = softmax(log pi0~ + beta onehot(y))
      = pi0~ exp(beta 1[a = y]) / (1 + (e^beta - 1) p_y)          (closed-form normaliser)
    L = -sum_a q_a log softmax(z)_a,         dL/dz = softmax(z) - q

    beta = inf: L = cross-entropy on y (SFT).   beta = 0, smoothing = 0: L = CE(softmax(z_ref), softmax(z)).
    q = (1 - w) pi0~ + w onehot(y),  w = sigmoid(log(e^beta - 1) + log p_y)   (the gate)

All maths in float32 (bf16 inputs are upcast); ref_logits never receive a gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from giftlab.losses._common import (
    check_beta,
    check_labels,
    check_logits,
    check_pair_loss,
    check_smoothing,
    log_expm1,
    reduce,
    safe_labels,
    upcast,
)

__all__ = [
    "STAT_NAMES",
    "chunk_token_stats",
    "gate_weight",
    "gift_log_target",
    "gift_loss",
    "gift_target",
    "gift_token_stats",
    "kd_to_base_loss",
    "sequence_consistent_gift_loss",
    "sequence_gains",
    "sequence_gains_from_logits",
    "smoothed_base_logp",
]


def smoothed_base_logp(ref_logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    """log pi0~ = log((1 - smoothing) softmax(z_ref) + smoothing / V), in log space, float32."""
    ref_logp = torch.log_softmax(upcast(ref_logits), dim=-1)
    if smoothing == 0.0:
        return ref_logp
    v = ref_logits.shape[-1]
    log_uniform = torch.full_like(ref_logp, math.log(smoothing / v))
    return torch.logaddexp(
        ref_logp + math.log1p(-smoothing) if smoothing < 1 else ref_logp - math.inf, log_uniform
    )


def gift_log_target(
    ref_logits: torch.Tensor, labels: torch.Tensor, beta, smoothing: float = 0.0
) -> torch.Tensor:
    """log q = log pi0~ + beta onehot(y) - log(1 + (e^beta - 1) p_y), float32, (..., V).

    beta: a float or a tensor broadcastable to labels' shape (per-token gains), entries in [0, inf].
    The gold entry uses log q_y = logsigmoid(x) - log1p(-e^-beta), x = log(e^beta - 1) + log p_y,
    which keeps full precision when q_y is near 1 (the naive form loses beta * eps).
    Labels must be in [0, V) (callers replace ignored positions).
    """
    base_logp = smoothed_base_logp(ref_logits, smoothing)  # (..., V)
    idx = labels.unsqueeze(-1)
    base_gold = base_logp.gather(-1, idx).squeeze(-1)
    b = torch.as_tensor(beta, dtype=base_logp.dtype, device=base_logp.device).expand_as(base_gold)
    finite = torch.isfinite(b)
    b_f = torch.where(finite, b, torch.zeros_like(b))
    x = log_expm1(b_f) + base_gold
    log_norm = torch.logaddexp(torch.zeros_like(x), x)  # log(1 + (e^beta - 1) p_y)
    log_q = base_logp - log_norm.unsqueeze(-1)
    gold = torch.where(
        b_f > 1.0,
        F.logsigmoid(x) - torch.log1p(-torch.exp(-b_f.clamp(min=1.0))),
        base_gold + b_f - log_norm,
    )
    log_q.scatter_(-1, idx, gold.unsqueeze(-1))
    if not bool(finite.all()):  # beta = inf: the one-hot target
        onehot_log = torch.full_like(log_q, float("-inf")).scatter_(-1, idx, 0.0)
        log_q = torch.where(finite.unsqueeze(-1), log_q, onehot_log)
    return log_q


def gift_target(ref_logits, labels, beta, smoothing: float = 0.0) -> torch.Tensor:
    """q = softmax(log pi0~ + beta onehot(y)): probabilities (..., V), float32.

    Naive equivalent: softmax(log((1 - s) softmax(z_ref) + s / V) + beta * onehot(y)).
    """
    beta = check_beta(beta)
    smoothing = check_smoothing(smoothing)
    check_logits(ref_logits, "ref_logits")
    check_labels(labels, ref_logits.shape[-1], ignore_index=-(2**62))
    return gift_log_target(ref_logits, labels, beta, smoothing).exp()


def _gift_cross_entropy(logits, log_q, valid, reduction):
    """-sum_a q_a log softmax(z)_a per token, reduced; q = exp(log_q) is a constant. Entries
    with q_a = 0 add 0 even where the policy's logit is -inf (a masked vocabulary entry)."""
    logp = torch.log_softmax(upcast(logits), dim=-1)
    q = log_q.exp()
    per_token = -torch.where(q > 0, q * logp, 0.0).sum(-1)
    return reduce(per_token, valid, reduction)


def _checked(logits, ref_logits, labels, smoothing, ignore_index, reduction):
    smoothing = check_smoothing(smoothing)
    valid = check_pair_loss(logits, ref_logits, labels, ignore_index, reduction)
    return smoothing, valid, safe_labels(labels, valid)


# The default inverse temperature everywhere (giftlab train, the pipeline, GIFTConfig, these losses,
# notebook 03). The paper's released default is 20, but on the bundled SmolLM2 and countdown data
# beta = 20 gives every response token a gate w_t = 1.000 and a target entropy of 0: one-hot SFT.
# At 5 the mean gate is 0.80, 17.6% of tokens keep more of the base than of the one-hot (w < 1/2)
# and the target's entropy is 0.75 nats against the base's 2.07 (scripts/measure_default_beta.py,
# paper_figures/default_beta.csv): GIFT shows. The sweeps' best start is gift:5 or gift:10.
DEFAULT_BETA = 5.0


def gift_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float = DEFAULT_BETA,
    smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """L = -sum_a q_a log softmax(z)_a, q = softmax(log pi0~ + beta onehot(y)); mean over tokens.

    beta -> inf: cross-entropy (SFT), exactly at beta = inf.  beta = 0, smoothing = 0: KD to base.
    Gradient: dL/dz = softmax(z) - q (per token, divided by the token count for "mean").

    Args:
        logits: (..., V) policy logits.  ref_logits: (..., V) reference logits (no gradient).
        labels: (...) gold ids, ignore_index where no loss.  beta: in [0, inf].  smoothing: [0, 1].
        reduction: "mean" over non-ignored tokens (0 when none), "sum", or "none" (per token).
    Returns:
        scalar, or (...) for reduction="none".
    """
    beta = check_beta(beta)
    smoothing, valid, lab = _checked(logits, ref_logits, labels, smoothing, ignore_index, reduction)
    with torch.no_grad():
        log_q = gift_log_target(ref_logits.detach(), lab, beta, smoothing)  # (..., V)
    return _gift_cross_entropy(logits, log_q, valid, reduction)


def kd_to_base_loss(
    logits, ref_logits, labels, ignore_index: int = -100, reduction: str = "mean"
) -> torch.Tensor:
    """Forward distillation to the base: CE(softmax(z_ref), softmax(z)) = GIFT at beta = 0.

    The gold label only selects which positions count.
    """
    return gift_loss(logits, ref_logits, labels, 0.0, 0.0, ignore_index, reduction)


def sequence_gains(
    ref_gold_logp: torch.Tensor,
    valid: torch.Tensor,
    eta,
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """g_t = log(1 + (e^eta - 1) prod_{u > t} p_u): the exact Gibbs gain for r = eta 1[y = y*].

    The product runs over later valid tokens of the same sequence: a reverse cumulative sum of
    log p_u along the last axis, reset at the end of each row, and at segment boundaries when
    `segment_ids` (non-decreasing along the row) marks packed sequences.

    Args:
        ref_gold_logp: (B, T) log pi0~(y_t | s_t) (ignored positions: any finite value).
        valid: (B, T) bool.  eta: in [0, inf].  segment_ids: optional (B, T) int.
    Returns:
        (B, T) float32 gains, <= eta, equal to eta at the last valid token of each sequence.
    """
    eta = check_beta(eta, "eta")
    x = torch.where(valid, upcast(ref_gold_logp), 0.0)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    incl = torch.flip(torch.cumsum(torch.flip(x, [-1]), -1), [-1])  # sum_{u >= t}
    excl = incl - x  # sum_{u > t}
    if segment_ids is not None:
        seg = segment_ids.reshape(x.shape)
        last = torch.searchsorted(seg.contiguous(), seg.contiguous(), right=True) - 1
        excl = excl - excl.gather(-1, last)  # drop the tail beyond this segment's last token
    excl = excl.reshape(ref_gold_logp.shape)
    if eta == float("inf"):
        return torch.full_like(excl, float("inf"))
    if eta < 80.0:  # e^eta - 1 fits in float32: log1p keeps full relative precision
        return torch.log1p(torch.expm1(excl.new_tensor(eta)) * torch.exp(excl))
    return torch.logaddexp(torch.zeros_like(excl), log_expm1(excl.new_tensor(eta)) + excl)


def sequence_consistent_gift_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    eta: float = 20.0,
    smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """GIFT with the exact per-token gains g_t in place of the constant beta (docs/theory.md section 3).

    q_t = softmax(log pi0~ + g_t onehot(y_t)),   g_t = log(1 + (e^eta - 1) pi0~(y_{>t} | s_t, y_t))
    L = -sum_a q_t,a log softmax(z_t)_a, mean over tokens.  At the optimum the policy is the exact
    Gibbs policy pi0 exp(eta 1[y = y*]) / Z on the gold path (smoothing = 0).

    Args:
        logits, ref_logits: (B, T, V).  labels: (B, T); each row one sequence (or several,
        separated by `segment_ids`).  eta: in [0, inf].  Other args as gift_loss.
    """
    eta = check_beta(eta, "eta")
    smoothing, valid, lab = _checked(logits, ref_logits, labels, smoothing, ignore_index, reduction)
    with torch.no_grad():
        gains = sequence_gains_from_logits(
            ref_logits, labels, eta, smoothing, ignore_index, segment_ids
        )
        log_q = gift_log_target(ref_logits.detach(), lab, gains, smoothing)
    return _gift_cross_entropy(logits, log_q, valid, reduction)


@torch.no_grad()
def sequence_gains_from_logits(
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    eta: float,
    smoothing: float = 0.0,
    ignore_index: int = -100,
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The gains g_t of sequence_gains from reference logits: p_u = pi0~(y_u | s_u), the smoothed
    base of the target (so the gains describe the same target the loss trains on).

    ref_logits: (B, T, V).  labels: (B, T).  Returns (B, T) float32.
    """
    valid = labels != ignore_index
    lab = safe_labels(labels, valid)
    gold = smoothed_base_logp(ref_logits.detach(), smoothing).gather(-1, lab.unsqueeze(-1))
    return sequence_gains(gold.squeeze(-1), valid, eta, segment_ids)


STAT_NAMES = (
    "policy_entropy",
    "ref_entropy",
    "target_entropy",
    "policy_gold_prob",
    "ref_gold_prob",
    "gate_w",
    "kl_target_policy",
    "kl_to_base",
    "ce_gold",
    "policy_gold_top1",
)


def gate_weight(base_gold_logp: torch.Tensor, beta) -> torch.Tensor:
    """w = (e^beta - 1) p / (1 + (e^beta - 1) p) = sigmoid(log(e^beta - 1) + log p); 1 at beta = inf."""
    b = torch.as_tensor(beta, dtype=base_gold_logp.dtype, device=base_gold_logp.device)
    b = b.expand_as(base_gold_logp)
    finite = torch.isfinite(b)
    w = torch.sigmoid(log_expm1(torch.where(finite, b, 0.0)) + base_gold_logp)
    return torch.where(finite, w, 1.0)


def chunk_token_stats(logp, ref_logp, log_q, idx, base_gold_logp, beta) -> dict[str, torch.Tensor]:
    """STAT_NAMES for one chunk of rows from its (rows, V) log-probabilities (see gift_token_stats).
    Entries of probability 0 (-inf logits) add 0 to entropies (0 log 0 = 0); a KL is inf where the
    first distribution puts mass on a zero of the second."""
    p, q, p0 = logp.exp(), log_q.exp(), ref_logp.exp()

    def plogx(prob, logx):  # sum_a prob_a logx_a with 0 * (-inf) = 0
        return torch.where(prob > 0, prob * logx, 0.0).sum(-1)

    h_q = -plogx(q, log_q)
    gold_logp = logp.gather(-1, idx).squeeze(-1)
    return {
        "policy_entropy": -plogx(p, logp),
        "ref_entropy": -plogx(p0, ref_logp),
        "target_entropy": h_q,
        "policy_gold_prob": gold_logp.exp(),
        "ref_gold_prob": ref_logp.gather(-1, idx).squeeze(-1).exp(),
        "gate_w": gate_weight(base_gold_logp, beta),
        "kl_target_policy": -plogx(q, logp) - h_q,
        "kl_to_base": plogx(p, logp) - plogx(p, ref_logp),
        "ce_gold": -gold_logp,
        "policy_gold_top1": (logp.argmax(-1) == idx[:, 0]).to(logp.dtype),
    }


@torch.no_grad()
def gift_token_stats(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    beta=DEFAULT_BETA,
    smoothing: float = 0.0,
    ignore_index: int = -100,
    chunk_rows: int = 1024,
) -> dict[str, torch.Tensor]:
    """Per-token diagnostics, computed chunk by chunk (no extra (N, V) tensor), (...,) each:

    policy_entropy H(pi), ref_entropy H(pi0), target_entropy H(q), policy_gold_prob pi(y),
    ref_gold_prob pi0(y), gate_w w, kl_target_policy KL(q || pi), kl_to_base KL(pi || pi0),
    ce_gold -log pi(y), policy_gold_top1 1[y = argmax pi]. Ignored positions hold 0 (select with labels != ignore_index).
    beta: a float or a tensor broadcastable to labels (per-token gains).
    """
    shape = labels.shape
    v = logits.shape[-1]
    z, zr, lab = logits.reshape(-1, v), ref_logits.reshape(-1, v), labels.reshape(-1)
    valid = lab != ignore_index
    lab = safe_labels(lab, valid)
    dtype = upcast(z[:0]).dtype
    b = torch.as_tensor(beta, dtype=dtype, device=z.device).expand(shape).reshape(-1)
    out = {k: torch.zeros(z.shape[0], dtype=dtype, device=z.device) for k in STAT_NAMES}
    for s in range(0, z.shape[0], chunk_rows):
        e = min(z.shape[0], s + chunk_rows)
        idx = lab[s:e].unsqueeze(-1)
        base_gold = smoothed_base_logp(zr[s:e], smoothing).gather(-1, idx).squeeze(-1)
        stats = chunk_token_stats(
            torch.log_softmax(upcast(z[s:e]), -1),
            torch.log_softmax(upcast(zr[s:e]), -1),
            gift_log_target(zr[s:e], lab[s:e], b[s:e], smoothing),
            idx,
            base_gold,
            b[s:e],
        )
        for k, t in stats.items():
            out[k][s:e] = t
    return {k: torch.where(valid, t, 0.0).reshape(shape) for k, t in out.items()}
