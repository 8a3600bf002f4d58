"""Exact float64 solvers: the bandit Gibbs policy, the tabular sequence model, soft Bellman,
GIFT against the exact answer, and the SFT -> RL bridge. numpy/scipy/sympy only (no torch)."""

from giftlab.theory.bandit import (
    entropy,
    gibbs_policy,
    kl_divergence,
    kl_regularized_objective,
    log_partition,
    numerical_optimum,
)
from giftlab.theory.tabular import (
    SoftBellman,
    TabularLM,
    sequence_gibbs,
    sequence_log_partition,
    soft_bellman,
)

__all__ = [
    "SoftBellman",
    "TabularLM",
    "entropy",
    "gibbs_policy",
    "kl_divergence",
    "kl_regularized_objective",
    "log_partition",
    "numerical_optimum",
    "sequence_gibbs",
    "sequence_log_partition",
    "soft_bellman",
]
