"""The one-step problem (the bandit): J_tau(pi) = E_pi[r] - tau KL(pi || pi0), solved exactly.

Notation of docs/theory.md section 1, with beta = 1/tau. Every function works over the last
axis and broadcasts over the leading ones. float64 throughout.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from giftlab.theory._checks import check_beta, check_probs, check_reward

__all__ = [
    "entropy",
    "gibbs_from_logp",
    "gibbs_policy",
    "kl_divergence",
    "kl_regularized_objective",
    "log_partition",
    "log_partition_from_logp",
    "numerical_optimum",
]


def _masked_log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)  # log 0 = -inf: such actions stay at probability 0


def gibbs_policy(base_probs, reward, beta) -> np.ndarray:
    """The maximiser of E_pi[r] - KL(pi || pi0)/beta.

    pi*_beta(a) = pi0(a) exp(beta r(a)) / Z,      Z = sum_a pi0(a) exp(beta r(a))

    beta = 0: pi0.
    beta -> inf: pi0 restricted to argmax of r over the support of pi0, renormalised.
    pi0(a) = 0 => pi*(a) = 0 at every beta (support preserved).

    Args:
        base_probs: (..., K) base probabilities pi0.
        reward: (..., K) or broadcastable, finite.
        beta: inverse temperature in [0, inf].
    Returns:
        (..., K) probabilities.
    """
    beta = check_beta(beta)
    p0 = check_probs(base_probs, "base_probs")
    r = check_reward(reward, p0.shape)
    return gibbs_from_logp(_masked_log(p0), r, beta)


def gibbs_from_logp(base_logp: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """`gibbs_policy` from base log-probabilities (-inf marks zero mass); inputs not validated.

    The one place the Gibbs tilt is computed: the bandit and the sequence solvers both call it.
    """
    support = base_logp > -np.inf
    r_support = np.where(support, reward, -np.inf)
    r_max = r_support.max(axis=-1, keepdims=True)
    if np.isinf(beta):
        logits = np.where(r_support == r_max, base_logp, -np.inf)
    else:
        # shifting by max r keeps the round-off at beta * range(r), not beta * max |r|
        logits = np.where(support, base_logp + beta * (reward - r_max), -np.inf)
    logits = logits - logits.max(axis=-1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(axis=-1, keepdims=True)


def log_partition(base_probs, reward, beta) -> np.ndarray:
    """log Z = log sum_a pi0(a) exp(beta r(a)), so that max_pi J = log Z / beta.

    beta = 0: 0.
    beta = inf: the limit, +inf if max r > 0, log pi0(argmax) if max r = 0, -inf if max r < 0.

    Args:
        base_probs: (..., K).  reward: (..., K) or broadcastable.  beta: in [0, inf].
    Returns:
        (...) array.
    """
    beta = check_beta(beta)
    p0 = check_probs(base_probs, "base_probs")
    r = check_reward(reward, p0.shape)
    return log_partition_from_logp(_masked_log(p0), r, beta)


def log_partition_from_logp(base_logp: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """`log_partition` from base log-probabilities (-inf marks zero mass); inputs not validated."""
    support = base_logp > -np.inf
    r_max = np.where(support, reward, -np.inf).max(axis=-1)
    if np.isinf(beta):
        top = support & (np.where(support, reward, -np.inf) == r_max[..., None])
        log_top = np.logaddexp.reduce(np.where(top, base_logp, -np.inf), axis=-1)
        return np.where(r_max > 0, np.inf, np.where(r_max < 0, -np.inf, log_top))
    logits = np.where(support, base_logp + beta * (reward - r_max[..., None]), -np.inf)
    m = logits.max(axis=-1)
    return beta * r_max + m + np.log(np.exp(logits - m[..., None]).sum(axis=-1))


def kl_divergence(p, q) -> np.ndarray:
    """KL(p || q) = sum_a p(a) log(p(a)/q(a)) over the last axis; 0 log 0 = 0; +inf off q's support.

    Args:
        p, q: (..., K) probabilities (not validated: an internal helper for normalised inputs).
    Returns:
        (...) array.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (_masked_log(p) - _masked_log(q)), 0.0)
    return terms.sum(axis=-1)


def entropy(p) -> np.ndarray:
    """H(p) = -sum_a p(a) log p(a) over the last axis (nats), with 0 log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return 0.0 - np.where(p > 0, p * _masked_log(p), 0.0).sum(axis=-1)  # 0.0 - : no "-0.0"


def kl_regularized_objective(policy, base_probs, reward, beta) -> np.ndarray:
    """J_beta(pi) = E_pi[r] - KL(pi || pi0) / beta.

    Gap identity: J_beta(pi) = log Z / beta - KL(pi || pi*_beta) / beta.
    beta = inf: E_pi[r].   beta = 0: E_pi[r] if pi = pi0 (KL = 0), else -inf.

    Args:
        policy, base_probs: (..., K).  reward: broadcastable to (..., K).  beta: in [0, inf].
    Returns:
        (...) array.
    """
    beta = check_beta(beta)
    p0 = check_probs(base_probs, "base_probs")
    pi = check_probs(policy, "policy")
    if pi.shape != p0.shape:
        raise ValueError(f"policy has shape {pi.shape} but base_probs has shape {p0.shape}")
    r = check_reward(reward, p0.shape)
    expected = (pi * r).sum(axis=-1)
    kl = kl_divergence(pi, p0)
    if np.isinf(beta):
        return expected
    if beta == 0:
        return np.where(kl == 0, expected, -np.inf)
    return expected - kl / beta


def numerical_optimum(base_probs, reward, beta, *, tol: float = 1e-12) -> np.ndarray:
    """Maximise J_beta over the simplex numerically (scipy SLSQP), independent of the closed form.

    -beta * J is minimised over probability vectors on the support of pi0 (actions outside it keep
    probability 0, which is optimal since KL would be infinite), from pi0, with its analytic
    gradient. Reaches about 1e-7 when beta * (range of r) is moderate (<~ 30); for sharper
    problems the optimum sits at the simplex boundary and convergence slows.

    Args:
        base_probs: (K,) base probabilities.  reward: (K,).  beta: finite, > 0.
    Returns:
        (K,) probabilities.
    """
    beta = check_beta(beta)
    if beta == 0 or np.isinf(beta):
        raise ValueError(f"beta must be finite and > 0 for the numerical optimiser, got {beta}")
    p0 = check_probs(base_probs, "base_probs")
    if p0.ndim != 1:
        raise ValueError(f"base_probs must be one vector (K,), got shape {p0.shape}")
    r = check_reward(reward, p0.shape)
    support = np.flatnonzero(p0 > 0)
    log_p0, r_s = np.log(p0[support]), r[support]

    def neg_scaled_objective(pi):
        # -beta J = sum pi (log pi - log p0 - beta r), gradient log pi - log p0 - beta r + 1
        f_a = np.log(np.maximum(pi, 1e-300)) - log_p0 - beta * r_s
        return float(pi @ f_a), f_a + 1.0

    # SLSQP directly on the simplex (the softmax parametrisation with L-BFGS stalled near vertices,
    # where its gradient vanishes, on a few random instances in a thousand)
    res = optimize.minimize(
        neg_scaled_objective,
        p0[support] / p0[support].sum(),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * len(support),
        constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1.0, "jac": np.ones_like}],
        options={"ftol": min(tol, 1e-15), "maxiter": 1000},
    )
    out = np.zeros_like(p0)
    pi = np.maximum(res.x, 0.0)
    out[support] = pi / pi.sum()
    return out
