"""Exact float64 solvers: the bandit Gibbs policy, the tabular sequence model, soft Bellman,
GIFT against the exact answer, and the SFT -> RL bridge. numpy/scipy/sympy only (no torch).

The bandit Gibbs policy pi0 exp(beta r) / Z, and its beta -> inf limit (the base renormalised on
the best rewards):

>>> import numpy as np
>>> from giftlab.theory import TabularLM, gibbs_policy, log_partition, soft_bellman
>>> from giftlab.theory import sequence_gibbs, sequence_log_partition
>>> p = gibbs_policy([0.5, 0.3, 0.2], [1.0, 0.0, 0.0], beta=2.0)
>>> bool(np.allclose(p, np.array([0.5 * np.e**2, 0.3, 0.2]) / (0.5 * np.e**2 + 0.5)))
True
>>> bool(np.isclose(log_partition([0.5, 0.3, 0.2], [1.0, 0.0, 0.0], 2.0), np.log(0.5 * np.e**2 + 0.5)))
True
>>> np.round(gibbs_policy([0.5, 0.3, 0.2], [1.0, 1.0, 0.0], beta=np.inf), 12).tolist()
[0.625, 0.375, 0.0]

A tabular model of every sequence of 5 tokens over 4, a reward per sequence (in the order of
lm.sequences()), and soft Bellman: the token policy pi0 exp(A) it returns induces exactly the
sequence-level Gibbs distribution, and V(root) is its log-partition:

>>> lm = TabularLM.random(vocab_size=4, horizon=5, seed=0, concentration=0.3, end_token=None)
>>> lm.n_sequences
1024
>>> reward = np.random.default_rng(0).uniform(size=lm.n_sequences)
>>> sb = soft_bellman(lm, reward, beta=3.0)
>>> induced = np.exp(lm.sequence_log_probs(sb.policy))
>>> bool(np.allclose(induced, sequence_gibbs(lm, reward, 3.0), rtol=0, atol=1e-12))
True
>>> bool(np.isclose(sb.log_z, sequence_log_partition(lm, reward, 3.0), rtol=0, atol=1e-12))
True
"""

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
