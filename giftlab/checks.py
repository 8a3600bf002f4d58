"""Checks shared by theory (numpy) and losses (torch): kept here so that neither imports the other."""

from __future__ import annotations

import math


def check_beta(beta, name: str = "beta") -> float:
    """Return `beta` as a float in [0, inf]; raise ValueError naming `name` otherwise."""
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, inf], got {beta!r}") from None
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be in [0, inf], got {value}")
    return value
