"""GRPO: group-centred advantages and the token-level PPO-clip objective with an optional KL to
the base model (docs/paper.md: group 8, clip 0.2, KL 0, advantages not divided by std).

    A_i = r_i - mean_group(r)            (/ (std_group(r) + eps) if normalize_std)
    L = sum_{i,t} [-min(rho A_i, clip(rho, 1 - clip_low, 1 + clip_high) A_i) + kl_coef KL_t] / N
    N = sum_{i,t} 1 (the completion tokens), or n_tokens when given
    rho = exp(logp - old_logp);  KL_t: k1 = logp - ref_logp,  k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1
"""

from __future__ import annotations

import torch

from giftlab.losses.baselines import ppo_clip_token_loss

__all__ = ["grpo_loss", "group_advantages", "kl_estimate"]


def group_advantages(
    rewards: torch.Tensor, normalize_std: bool = False, eps: float = 1e-6
) -> torch.Tensor:
    """(B, G) rewards -> (B, G) advantages r - mean over the group; a group with zero variance
    gives zeros (never NaN), also when normalising by the std. NaN or infinite rewards are a
    ValueError naming the group and sample (a failed verifier is not a reward)."""
    bad = ~torch.isfinite(rewards)
    if bool(bad.any()):
        g, i = (int(x) for x in bad.nonzero()[0])
        raise ValueError(
            f"rewards must be finite: group {g}, sample {i} is {float(rewards[g, i])} "
            f"({int(bad.sum())} non-finite in all)"
        )
    centred = rewards - rewards.mean(-1, keepdim=True)
    if not normalize_std:
        return centred
    return centred / (rewards.std(-1, keepdim=True, unbiased=False) + eps)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi: k1 = logp - ref_logp (unbiased,
    can be negative), k3 = exp(ref - logp) - (ref - logp) - 1 (unbiased, >= 0)."""
    d = ref_logp - logp
    if estimator == "k1":
        return -d
    if estimator == "k3":
        return torch.exp(d) - d - 1
    raise ValueError(f"estimator must be k1 or k3, got {estimator!r}")


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    kl_estimator: str = "k3",
    n_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level GRPO loss and its statistics.

    Args:
        logp, old_logp: (N, T) log-probabilities of the sampled tokens under the policy being
            trained and the sampling policy.  advantages: (N,) per sequence.  mask: (N, T) bool,
            True on completion tokens.  ref_logp: (N, T) under the base model (for the KL term).
        n_tokens: the loss's denominator when these rows are part of a larger batch (default:
            their own completion tokens). With kl_coef = 0 a row whose advantage is 0 adds 0 to
            the loss and its gradient for every ratio, so the rows with A != 0 and the whole
            batch's token count give the whole batch's loss. The statistics stay over these rows.
    Returns:
        (scalar loss, {"clip_frac", "kl", "ratio_mean"}).
    """
    if not bool(torch.isfinite(advantages).all()):
        raise ValueError("advantages must be finite (NaN rewards? see group_advantages)")
    m = mask.to(logp.dtype)
    n = m.sum().clamp(min=1)
    denominator = (
        n
        if n_tokens is None
        else torch.as_tensor(n_tokens, dtype=m.dtype, device=m.device).clamp(min=1)
    )
    per_token, clipped = ppo_clip_token_loss(
        logp, old_logp.detach(), advantages[:, None], clip_low, clip_high
    )
    stats = {
        "clip_frac": (clipped.to(m.dtype) * m).sum() / n,
        "ratio_mean": (torch.exp(logp - old_logp).detach() * m).sum() / n,
    }
    if ref_logp is not None:
        kl = kl_estimate(logp, ref_logp.detach(), kl_estimator)
        stats["kl"] = (kl.detach() * m).sum() / n
        if kl_coef:
            per_token = per_token + kl_coef * kl
    loss = (per_token * m).sum() / denominator
    return loss, stats
