"""The two-stage bridge (docs/theory.md section 3c): exact KL-regularised RL from any start.

If RL maximises E_pi[r] - KL(pi || pi_init) / lam_rl exactly, its optimum is
pi_init exp(lam_rl r) / Z. Tilts compose: tilt(tilt(pi0, beta), lam_rl) = tilt(pi0, beta + lam_rl),
so a start pi0 exp(beta r) reaches the global optimum pi0 exp(eta r) exactly when
beta = eta - lam_rl. A one-hot start (SFT, beta = inf) is absorbing: a finite tilt never gives
mass back to a sequence the start zeroed.
"""

from __future__ import annotations

import numpy as np

from giftlab.theory._checks import check_beta
from giftlab.theory.tabular import SoftBellman, TabularLM, soft_bellman

__all__ = ["bridge_beta", "exact_kl_rl", "policy_model"]


def policy_model(lm: TabularLM, tables) -> TabularLM:
    """A TabularLM with the same tree as `lm` and per-depth `tables` (e.g. a trained policy)."""
    return TabularLM(list(tables), lm.end_token)


def exact_kl_rl(init: TabularLM, reward, lam_rl, *, token_reward=None) -> SoftBellman:
    """The exact optimum of E_pi[r] - KL(pi || pi_init) / lam_rl, by soft Bellman on pi_init.

    lam_rl = 0: pi_init (no RL).  lam_rl = inf: unregularised RL (best reward, pi_init-weighted).
    Returns the SoftBellman of `init`: .policy holds the RL optimum per depth.
    """
    return soft_bellman(init, reward, check_beta(lam_rl, "lam_rl"), token_reward=token_reward)


def bridge_beta(eta, lam_rl) -> float:
    """The GIFT beta whose start reaches the global optimum pi0 exp(eta r) after the RL tilt."""
    eta = check_beta(eta, "eta")
    lam_rl = check_beta(lam_rl, "lam_rl")
    if lam_rl > eta:
        raise ValueError(f"lam_rl = {lam_rl} exceeds eta = {eta}: no beta >= 0 bridges them")
    return float(eta - lam_rl) if np.isfinite(eta) else np.inf
