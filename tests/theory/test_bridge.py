"""The two-stage bridge (theory.md section 3c): composition of tilts, bridge beta, SFT absorbing."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from giftlab.theory import gibbs_policy, sequence_gibbs, soft_bellman
from giftlab.theory.bridge import bridge_beta, exact_kl_rl, policy_model
from giftlab.theory.gift import gold_reward
from tests.conftest import EPS
from tests.theory.strategies import base_probs, rewards, tabular_lms

betas = st.floats(0.0, 50.0)


@given(st.data(), betas, betas)
def test_bandit_tilts_compose(data, beta, lam_rl):
    p0 = data.draw(base_probs())
    r = data.draw(rewards(len(p0)))
    two_stage = gibbs_policy(gibbs_policy(p0, r, beta), r, lam_rl)
    spread = r[p0 > 0].max() - r[p0 > 0].min()
    np.testing.assert_allclose(
        two_stage,
        gibbs_policy(p0, r, beta + lam_rl),
        rtol=0,
        atol=64 * len(p0) * EPS * (1 + (beta + lam_rl) * spread + np.abs(np.log(p0[p0 > 0])).max()),
    )


@given(tabular_lms(max_horizon=3), st.floats(0.0, 10.0), st.floats(0.0, 10.0), st.integers(0, 999))
def test_exact_rl_from_gibbs_start_reaches_global_optimum(lm, lam_rl, extra, seed):
    """Start = pi0 exp(beta r) with beta = eta - lam_rl; exact RL with KL to the start at lam_rl
    lands on pi0 exp(eta r) / Z, to round-off."""
    eta = lam_rl + extra
    beta = bridge_beta(eta, lam_rl)
    r = np.random.default_rng(seed).uniform(0, 1, size=lm.n_sequences)
    start = policy_model(lm, soft_bellman(lm, r, beta).policy)
    after_rl = exact_kl_rl(start, r, lam_rl)
    reached = np.exp(lm.sequence_log_probs(after_rl.policy))
    log_size = max(np.abs(lp[np.isfinite(lp)]).max() for lp in lm.log_probs)
    np.testing.assert_allclose(
        reached,
        sequence_gibbs(lm, r, eta),
        rtol=128 * (lm.horizon + 1) * EPS * (1 + eta + log_size),
        atol=1e-300,
    )


@given(tabular_lms(max_horizon=3), st.floats(0.1, 50.0), st.integers(0, 10_000))
def test_sft_start_is_absorbing(lm, lam_rl, pick):
    """SFT (beta = inf on the demonstration) zeroes every other sequence; exact RL with any finite
    lam_rl under a reward with several correct answers gives none of that mass back."""
    seqs = lm.sequences()
    gold = seqs[pick % len(seqs)]
    sft = policy_model(lm, soft_bellman(lm, gold_reward(lm, gold), np.inf).policy)
    rng = np.random.default_rng(pick)
    verifier = (rng.uniform(size=lm.n_sequences) < 0.5).astype(float)
    verifier[np.all(seqs == gold, axis=1)] = 1.0
    start_mass = np.exp(lm.sequence_log_probs(sft.probs))
    after = np.exp(lm.sequence_log_probs(exact_kl_rl(sft, verifier, lam_rl).policy))
    zeroed = start_mass == 0
    assert zeroed.sum() >= 1 or lm.n_sequences == 1 or np.all(start_mass[~zeroed] > 0)
    np.testing.assert_array_equal(after[zeroed], 0.0)
    # whereas the global optimum keeps every correct answer the base supports
    optimum = sequence_gibbs(lm, verifier, lam_rl)
    base_mass = np.exp(lm.sequence_log_probs())
    correct_supported = (verifier == 1) & (base_mass > 0) & zeroed
    assert np.all(optimum[correct_supported] > 0)


def test_bridge_beta_rejects_rl_stronger_than_target():
    assert bridge_beta(5.0, 2.0) == 3.0
    with pytest.raises(ValueError, match="exceeds eta"):
        bridge_beta(1.0, 2.0)
