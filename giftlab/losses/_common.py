"""Shared glue for the token objectives: input checks, masking, reduction, log(e^beta - 1)."""

from __future__ import annotations

import torch

from giftlab.checks import check_beta  # noqa: F401 - re-exported

REDUCTIONS = ("mean", "sum", "none")


def check_smoothing(smoothing) -> float:
    s = float(smoothing)
    if not 0.0 <= s <= 1.0:  # also rejects NaN
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
    return s


def check_labels(labels: torch.Tensor, vocab_size: int, ignore_index: int) -> torch.Tensor:
    """The boolean mask of tokens that count; ValueError for a label outside [0, V)."""
    if labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integer token ids, got dtype {labels.dtype}")
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= vocab_size))
    if bool(bad.any()):
        value = int(labels[bad][0])
        raise ValueError(
            f"labels has {int(bad.sum())} id(s) outside [0, {vocab_size}) other than "
            f"ignore_index={ignore_index}, e.g. {value}"
        )
    return valid


def check_shapes(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """labels (...) must match logits (..., V) without its last axis."""
    if labels is None:
        raise ValueError("labels is required: the gold token ids, shape logits.shape[:-1]")
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}, but logits of shape {tuple(logits.shape)} "
            f"need labels of shape {tuple(logits.shape[:-1])} (one id per row of logits)"
        )


def check_non_negative(value, name: str) -> float:
    """A finite number >= 0 (alpha, clip_high, ...); ValueError naming it otherwise."""
    v = float(value)
    if not (v >= 0 and v != float("inf")):  # also rejects NaN
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return v


def check_clip(clip_low, clip_high) -> None:
    """PPO's clip range: clip_low in [0, 1) (the ratio's floor 1 - clip_low stays > 0),
    clip_high a finite number >= 0."""
    if not 0 <= float(clip_low) < 1:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
    check_non_negative(clip_high, "clip_high")


def check_logits(logits: torch.Tensor, name: str) -> None:
    if logits is None:
        raise ValueError(
            f"{name} is required by this objective (the reference model's logits), got None"
        )
    if not logits.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point, got {logits.dtype}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_same_vocab(logits: torch.Tensor, ref_logits: torch.Tensor) -> None:
    if logits.shape[-1] != ref_logits.shape[-1]:
        raise ValueError(
            f"policy vocabulary (logits.shape[-1] = {logits.shape[-1]}) differs from reference "
            f"vocabulary (ref_logits.shape[-1] = {ref_logits.shape[-1]})"
        )
    if logits.shape != ref_logits.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and ref_logits {tuple(ref_logits.shape)} differ"
        )


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce(per_token: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """Mean over valid tokens (0 with a zero gradient when none), sum, or per token (0 if ignored)."""
    per_token = torch.where(valid, per_token, torch.zeros_like(per_token))
    if reduction == "none":
        return per_token
    total = per_token.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp(min=1)


def log_expm1(beta: torch.Tensor) -> torch.Tensor:
    """log(e^beta - 1) without overflow: beta + log1p(-e^-beta) for beta > 1; -inf at 0, inf at inf."""
    small = torch.log(torch.expm1(beta.clamp(max=1.0)))
    large = beta + torch.log1p(-torch.exp(-beta.clamp(min=1.0)))
    return torch.where(beta <= 1.0, small, large)


def safe_labels(labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Labels with ignored positions set to 0, so that gather is in range."""
    return torch.where(valid, labels, torch.zeros_like(labels))


def upcast(x: torch.Tensor) -> torch.Tensor:
    """float32 for half/bf16/float32 inputs, float64 kept (tests check to float64 round-off)."""
    return x if x.dtype == torch.float64 else x.float()


def check_pair_loss(logits, ref_logits, labels, ignore_index: int, reduction: str):
    """The checks of a loss over (logits, ref_logits, labels), in the order every such loss runs
    them (reduction, finite logits of both, one vocabulary, label shape, label range); returns
    the mask of the tokens that count."""
    check_reduction(reduction)
    check_logits(logits, "logits")
    check_logits(ref_logits, "ref_logits")
    check_same_vocab(logits, ref_logits)
    check_shapes(logits, labels)
    return check_labels(labels, logits.shape[-1], ignore_index)
