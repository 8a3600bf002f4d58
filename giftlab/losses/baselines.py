"""The SFT baselines of docs/paper.md, one function each, with one calling convention:

    loss = fn(logits, ref_logits, labels, *, <hyper-parameters>, ignore_index=-100, reduction="mean")

ref_logits may be None where the objective does not use the reference. Per response token, with
p = pi_theta(y | s) and sg = stop-gradient; every loss is averaged over non-ignored tokens.
"""

from __future__ import annotations

import torch

from giftlab.losses._common import (
    check_clip,
    check_labels,
    check_logits,
    check_non_negative,
    check_reduction,
    check_same_vocab,
    check_shapes,
    reduce,
    safe_labels,
    upcast,
)

__all__ = [
    "asft_loss",
    "dft_loss",
    "label_smoothing_loss",
    "ppo_clip_token_loss",
    "psft_loss",
    "sft_entropy_loss",
    "sft_loss",
]


def _policy_logp(logits, labels, ignore_index, reduction):
    check_reduction(reduction)
    check_logits(logits, "logits")
    check_shapes(logits, labels)
    valid = check_labels(labels, logits.shape[-1], ignore_index)
    lab = safe_labels(labels, valid)
    logp = torch.log_softmax(upcast(logits), dim=-1)  # (..., V)
    return logp, logp.gather(-1, lab.unsqueeze(-1)).squeeze(-1), valid


def sft_loss(logits, ref_logits=None, labels=None, *, ignore_index=-100, reduction="mean"):
    """SFT: -log p.  Equals torch.nn.functional.cross_entropy."""
    _, gold, valid = _policy_logp(logits, labels, ignore_index, reduction)
    return reduce(-gold, valid, reduction)


def sft_entropy_loss(
    logits, ref_logits=None, labels=None, *, alpha=0.01, ignore_index=-100, reduction="mean"
):
    """SFT + entropy bonus: -log p - alpha H(pi_theta(. | s)),  H = -sum_a pi log pi.
    alpha: a finite number >= 0."""
    alpha = check_non_negative(alpha, "alpha")
    logp, gold, valid = _policy_logp(logits, labels, ignore_index, reduction)
    entropy = -(logp.exp() * logp).sum(-1)
    return reduce(-gold - alpha * entropy, valid, reduction)


def label_smoothing_loss(
    logits, ref_logits=None, labels=None, *, eps=0.1, ignore_index=-100, reduction="mean"
):
    """Label smoothing: CE against (1 - eps) onehot(y) + eps / V
    = (1 - eps)(-log p) + eps * mean_a(-log pi_a).  Equals cross_entropy(label_smoothing=eps)."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be in [0, 1], got {eps}")
    logp, gold, valid = _policy_logp(logits, labels, ignore_index, reduction)
    return reduce(-(1 - eps) * gold - eps * logp.mean(-1), valid, reduction)


def dft_loss(logits, ref_logits=None, labels=None, *, ignore_index=-100, reduction="mean"):
    """DFT (dynamic fine-tuning): -sg(p) log p."""
    _, gold, valid = _policy_logp(logits, labels, ignore_index, reduction)
    return reduce(-gold.detach().exp() * gold, valid, reduction)


def asft_loss(logits, ref_logits, labels, *, alpha=0.1, ignore_index=-100, reduction="mean"):
    """ASFT: -sg(p) log p + alpha KL(pi0 || pi_theta),  KL = sum_a pi0 (log pi0 - log pi_theta)
    over the full vocabulary (pi0 = softmax(ref_logits), no gradient).  alpha: finite, >= 0."""
    alpha = check_non_negative(alpha, "alpha")
    check_logits(ref_logits, "ref_logits")
    check_same_vocab(logits, ref_logits)
    logp, gold, valid = _policy_logp(logits, labels, ignore_index, reduction)
    ref_logp = torch.log_softmax(upcast(ref_logits.detach()), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return reduce(-gold.detach().exp() * gold + alpha * kl, valid, reduction)


def ppo_clip_token_loss(logp, old_logp, advantages, clip_low=0.2, clip_high=0.2):
    """PPO-clip per token: -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A),  r = exp(logp - old_logp).

    Returns (per-token loss, clipped mask: tokens where the clipped term was the minimum and
    differs from the unclipped one, i.e. the gradient is zero).
    """
    check_clip(clip_low, clip_high)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    loss = -torch.minimum(unclipped, clipped)
    return loss, clipped < unclipped


def psft_loss(
    logits,
    ref_logits=None,
    labels=None,
    *,
    old_logp,
    clip_low=0.2,
    clip_high=0.2,
    ignore_index=-100,
    reduction="mean",
):
    """PSFT: PPO-clip with advantage 1 on the gold token: -min(r, clip(r, 1 - eps_low, 1 + eps_high)),
    r = pi_theta(y) / pi_old(y).  old_logp: (...) log pi_old(y), the gold log-probabilities of the
    policy before this update (no gradient)."""
    _, gold, valid = _policy_logp(logits, labels, ignore_index, reduction)
    if old_logp.shape != gold.shape:
        raise ValueError(f"old_logp has shape {tuple(old_logp.shape)}, labels {tuple(gold.shape)}")
    loss, _ = ppo_clip_token_loss(gold, upcast(old_logp.detach()), 1.0, clip_low, clip_high)
    return reduce(loss, valid, reduction)
