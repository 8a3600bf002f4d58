"""TabularLM and soft Bellman against brute-force enumeration (theory.md section 2)."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from giftlab.theory import TabularLM, sequence_gibbs, sequence_log_partition, soft_bellman
from tests.conftest import EPS
from tests.theory.strategies import any_beta, finite_beta, tabular_lms


def _reward(lm, seed, scale):
    return scale * np.random.default_rng(seed).uniform(-1, 1, size=lm.n_sequences)


def _roundoff(lm, beta, reward):
    """Relative round-off of a sequence probability: T tokens, each formed in log space from
    terms of size |log pi0| and beta * max |r| (the soft values), then exponentiated."""
    log_size = max(np.abs(lp[np.isfinite(lp)]).max() for lp in lm.log_probs)
    spread = float(np.abs(reward).max()) if np.isfinite(beta) else 0.0
    return (
        32 * (lm.horizon + 1) * EPS * (1 + log_size + (beta * spread if np.isfinite(beta) else 0))
    )


def _brute_force_sequences(lm):
    """Every complete sequence by explicit enumeration, in the documented order."""
    content = [a for a in range(lm.vocab_size) if a != lm.end_token]
    out = []
    if lm.end_token is not None:
        for d in range(lm.horizon):
            for prefix in itertools.product(content, repeat=d):
                out.append(list(prefix) + [lm.end_token] + [-1] * (lm.horizon - d - 1))
    out.extend(list(p) for p in itertools.product(content, repeat=lm.horizon))
    return np.array(out)


def _brute_force_log_prob(lm, seq):
    """log pi0(y) by walking the tree token by token (independent of path_totals)."""
    total = 0.0
    tokens = [a for a in seq if a != -1]
    index = lm.prefix_indices(tokens)
    for d, (i, a) in enumerate(zip(index, tokens)):
        total += np.log(lm.probs[d][i, a]) if lm.probs[d][i, a] > 0 else -np.inf
    return total


@given(tabular_lms(max_vocab=3, max_horizon=3))
def test_sequences_and_log_probs_match_brute_force(lm):
    seqs = lm.sequences()
    np.testing.assert_array_equal(seqs, _brute_force_sequences(lm))
    assert len(seqs) == lm.n_sequences
    with np.errstate(divide="ignore"):
        naive = np.array([_brute_force_log_prob(lm, s) for s in seqs])
    np.testing.assert_allclose(lm.sequence_log_probs(), naive, rtol=1e-13)
    np.testing.assert_allclose(np.exp(lm.sequence_log_probs()).sum(), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(lm.sequence_lengths(), (seqs != -1).sum(axis=1))


@given(tabular_lms(), any_beta, st.integers(0, 1000), st.sampled_from([1e-3, 1.0, 1e3]))
def test_token_product_equals_sequence_gibbs(lm, beta, seed, scale):
    """prod_t pi*(y_t | s_t) = pi0(y) exp(beta r(y)) / Z for every y, to float64 round-off."""
    reward = _reward(lm, seed, scale)
    sb = soft_bellman(lm, reward, beta)
    product = np.exp(lm.sequence_log_probs(sb.policy))
    exact = sequence_gibbs(lm, reward, beta)
    np.testing.assert_allclose(product, exact, rtol=_roundoff(lm, beta, reward), atol=1e-300)


@given(tabular_lms(), finite_beta, st.integers(0, 1000), st.sampled_from([1e-3, 1.0, 1e3]))
def test_root_value_is_log_partition(lm, beta, seed, scale):
    reward = _reward(lm, seed, scale)
    sb = soft_bellman(lm, reward, beta)
    log_z = sequence_log_partition(lm, reward, beta)
    scale_log = 1 + abs(log_z) + beta * np.abs(reward).max()
    np.testing.assert_allclose(
        sb.log_z, log_z, rtol=0, atol=16 * (lm.horizon + 1) * EPS * scale_log
    )


@given(tabular_lms(), any_beta, st.integers(0, 1000))
def test_policy_rows_are_normalised_and_keep_base_support(lm, beta, seed):
    reward = _reward(lm, seed, 1.0)
    sb = soft_bellman(lm, reward, beta)
    for d in range(lm.horizon):
        np.testing.assert_allclose(
            sb.policy[d].sum(axis=1), 1.0, rtol=0, atol=8 * lm.vocab_size * EPS
        )
        assert np.all(sb.policy[d][lm.probs[d] == 0] == 0)


@given(tabular_lms(), finite_beta, st.integers(0, 1000))
def test_policy_is_base_times_exp_advantage(lm, beta, seed):
    """pi*(a|s) = pi0(a|s) exp(A(s, a)): advantage alignment, and its normalisation
    sum_a pi0 e^Q = e^V."""
    reward = _reward(lm, seed, 1.0)
    sb = soft_bellman(lm, reward, beta)
    for d in range(lm.horizon):
        # in log space: pi0 can be 1e-300 where exp(A) overflows
        aligned = np.exp(lm.log_probs[d] + sb.advantage(d))
        np.testing.assert_allclose(
            sb.policy[d], aligned, rtol=_roundoff(lm, beta, reward), atol=1e-300
        )


@given(tabular_lms(max_horizon=3), finite_beta, st.integers(0, 1000))
def test_per_token_rewards_equal_their_sequence_totals(lm, beta, seed):
    rng = np.random.default_rng(seed)
    token_reward = [rng.uniform(-1, 1, size=p.shape) for p in lm.probs]
    totals = np.array(
        [
            sum(
                token_reward[d][i, a]
                for d, (i, a) in enumerate(zip(lm.prefix_indices(s), s[s != -1]))
            )
            for s in lm.sequences()
        ]
    )
    np.testing.assert_allclose(lm.path_totals(token_reward), totals, rtol=1e-12, atol=1e-12)
    sb = soft_bellman(lm, None, beta, token_reward=token_reward)
    product = np.exp(lm.sequence_log_probs(sb.policy))
    np.testing.assert_allclose(
        product, sequence_gibbs(lm, totals, beta), rtol=2 * _roundoff(lm, beta, totals), atol=1e-300
    )


def test_soft_bellman_hand_case():
    """V = 2, T = 1: a bandit. V(root) = log(0.25 e^2 + 0.75)."""
    lm = TabularLM([np.array([[0.25, 0.75]])])
    sb = soft_bellman(lm, np.array([1.0, 0.0]), 2.0)
    np.testing.assert_allclose(sb.log_z, np.log(0.25 * np.e**2 + 0.75), rtol=1e-15)
    np.testing.assert_allclose(
        sb.policy[0][0], np.array([0.25 * np.e**2, 0.75]) / (0.25 * np.e**2 + 0.75), rtol=1e-15
    )


def test_soft_bellman_infinite_beta_hand_case():
    """Two steps: the best reward sits in two leaves; pi* weighs them by base mass."""
    lm = TabularLM([np.array([[0.5, 0.5]]), np.array([[0.9, 0.1], [0.2, 0.8]])])
    # sequences: 00, 01, 10, 11
    sb = soft_bellman(lm, np.array([0.0, 1.0, 1.0, 0.0]), np.inf)
    # mass on best: 0.5 * 0.1 (path 01) vs 0.5 * 0.2 (path 10)
    np.testing.assert_allclose(sb.policy[0][0], [1 / 3, 2 / 3], rtol=1e-15)
    np.testing.assert_allclose(sb.policy[1], [[0.0, 1.0], [1.0, 0.0]])


# -- bad input ----------------------------------------------------------------------------------


def test_reward_of_wrong_length_is_named():
    lm = TabularLM.random(3, 2, seed=0)
    with pytest.raises(ValueError, match=r"reward must have shape \(9,\)"):
        soft_bellman(lm, np.zeros(8), 1.0)


def test_too_large_model_says_how_much_memory_it_needs():
    with pytest.raises(ValueError, match=r"needs about .* GiB"):
        TabularLM.random(50, 10, seed=0)


def test_unnormalised_table_is_rejected():
    with pytest.raises(ValueError, match=r"probs\[1\] has a row summing to"):
        TabularLM([np.array([[0.5, 0.5]]), np.array([[0.5, 0.6], [0.5, 0.5]])])


def test_wrong_table_shape_is_rejected():
    with pytest.raises(ValueError, match=r"probs\[1\] has shape"):
        TabularLM([np.array([[0.5, 0.5]]), np.array([[0.5, 0.5]])])


def test_negative_beta_is_rejected():
    lm = TabularLM.random(2, 2, seed=0)
    with pytest.raises(ValueError, match="beta must be in"):
        soft_bellman(lm, np.zeros(4), -0.5)


def test_misplaced_end_token_is_rejected():
    lm = TabularLM.random(3, 3, seed=0, end_token=0)
    with pytest.raises(ValueError, match="end token at position 0"):
        lm.prefix_indices([0, 1])
