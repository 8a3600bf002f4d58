"""Argument validation shared by the exact solvers: every error names the argument."""

from __future__ import annotations

import numpy as np

from giftlab.checks import check_beta  # noqa: F401 - re-exported

PROB_ATOL = 1e-6
"""Largest |sum(p) - 1| accepted for a probability vector; within it the vector is renormalised."""


def check_probs(probs, name: str) -> np.ndarray:
    """Float64 probabilities over the last axis: finite, >= 0, summing to 1 within PROB_ATOL."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (the actions), got a scalar")
    if p.shape[-1] == 0:
        raise ValueError(f"{name} has an empty last axis: at least one action is needed")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    if np.any(p < 0):
        raise ValueError(f"{name} contains negative probabilities (min {p.min():.3g})")
    sums = p.sum(axis=-1)
    worst = float(np.max(np.abs(sums - 1.0)))
    if worst > PROB_ATOL:
        raise ValueError(
            f"{name} is not normalised over its last axis: a row sums to "
            f"{sums.flat[int(np.argmax(np.abs(sums - 1.0)))]:.6g} "
            f"(tolerance |sum - 1| <= {PROB_ATOL:g})"
        )
    return p / sums[..., None]


def check_reward(reward, shape: tuple[int, ...], name: str = "reward") -> np.ndarray:
    """Float64 finite reward broadcastable to `shape` (the probabilities' shape)."""
    r = np.asarray(reward, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    try:
        return np.broadcast_to(r, shape)
    except ValueError:
        raise ValueError(
            f"{name} has shape {r.shape}, which does not broadcast to the probabilities' "
            f"shape {shape}"
        ) from None
