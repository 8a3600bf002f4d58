"""GIFT's token target against the exact Gibbs policy (theory.md sections 3 and 3b)."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from giftlab.theory import soft_bellman
from giftlab.theory.gift import (
    compare_sequence_distributions,
    exact_gains,
    exact_gold_gibbs,
    gate_weight,
    gift_target,
    gold_path,
    gold_path_policy,
    gold_reward,
    log_expm1,
    sequence_consistent_gift_target,
)
from giftlab.theory.symbolic import check_all
from tests.conftest import EPS
from tests.theory.strategies import any_beta, base_probs, tabular_lms


def _naive_gift_target(p0, gold, beta, smoothing):
    """The reference trainer's formula, written plainly: mix, log, +beta at the label, softmax."""
    v = p0.shape[-1]
    mixed = (1 - smoothing) * p0 + smoothing / v
    logits = np.log(mixed) + beta * (np.arange(v) == gold[:, None])
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@st.composite
def gold_rows(draw):
    rows = draw(st.integers(1, 4))
    p = np.stack([draw(base_probs(min_k=3, max_k=3)) for _ in range(rows)])
    gold = np.array([draw(st.integers(0, 2)) for _ in range(rows)])
    return p, gold


@given(gold_rows(), st.floats(0.0, 50.0), st.sampled_from([0.0, 0.01, 0.3, 1.0]))
def test_gift_target_matches_reference_formula(rows, beta, smoothing):
    p, gold = rows
    assume(smoothing > 0 or np.all(p > 0))  # the reference formula takes log(0) otherwise
    np.testing.assert_allclose(
        gift_target(p, gold, beta, smoothing),
        _naive_gift_target(p, gold, beta, smoothing),
        rtol=0,
        atol=64 * EPS * (1 + beta),
    )


@given(gold_rows(), any_beta)
def test_gift_target_is_the_mixture_with_weight_w(rows, beta):
    """q_t = (1 - w_t) pi0 + w_t onehot(y*_t)."""
    p, gold = rows
    w = gate_weight(p[np.arange(len(gold)), gold], beta)
    onehot = np.eye(p.shape[1])[gold]
    mixture = (1 - w[:, None]) * p + w[:, None] * onehot
    np.testing.assert_allclose(
        gift_target(p, gold, beta), mixture, rtol=0, atol=64 * EPS * (1 + min(beta, 1e3))
    )


@given(gold_rows(), st.floats(0.0, 30.0))
def test_gift_cross_entropy_is_sft_plus_distillation(rows, beta):
    """CE(q_t, pi) = w_t (-log pi(y*_t)) + (1 - w_t) CE(pi0, pi)  (theory.md 3b)."""
    p, gold = rows
    pi = np.random.default_rng(0).dirichlet(np.ones(p.shape[1]), size=len(gold))
    q = gift_target(p, gold, beta)
    w = gate_weight(p[np.arange(len(gold)), gold], beta)
    ce = -(q * np.log(pi)).sum(axis=1)
    decomposed = w * -np.log(pi[np.arange(len(gold)), gold]) + (1 - w) * -(p * np.log(pi)).sum(
        axis=1
    )
    np.testing.assert_allclose(ce, decomposed, rtol=1e-12)


def test_gate_weight_is_half_at_log_one_plus_inverse_p():
    p = np.array([1e-9, 1e-3, 0.1, 0.5, 0.99])
    np.testing.assert_allclose(gate_weight(p, 0.0), 0.0)
    for pi in p:
        np.testing.assert_allclose(gate_weight(pi, np.log1p(1 / pi)), 0.5, rtol=1e-12)
    # theory.md: at beta = 20 every token with p >= 2e-9 has w >= 1/2
    assert gate_weight(2.1e-9, 20.0) >= 0.5 > gate_weight(1.9e-9, 20.0)


def test_log_expm1_is_exact_across_scales():
    b = np.array([1e-8, 0.5, 1.0, 2.0, 30.0, 800.0])
    naive = np.log(np.expm1(b[:5]))
    np.testing.assert_allclose(log_expm1(b[:5]), naive, rtol=1e-14)
    np.testing.assert_allclose(log_expm1(800.0), 800.0, rtol=1e-15)
    assert log_expm1(0.0) == -np.inf and log_expm1(np.inf) == np.inf


@given(st.lists(st.floats(-30.0, 0.0), min_size=1, max_size=8), st.floats(0.0, 50.0))
def test_exact_gains_formula_and_bound(gold_logp, eta):
    lp = np.array(gold_logp)
    g = exact_gains(lp, eta)
    naive = [np.log1p(np.expm1(eta) * np.exp(lp[t + 1 :].sum())) for t in range(len(lp))]
    np.testing.assert_allclose(g, naive, rtol=1e-12, atol=1e-300)
    assert np.all(g <= eta * (1 + 4 * EPS))
    np.testing.assert_allclose(g[-1], eta, rtol=1e-14)


@given(tabular_lms(), st.floats(0.0, 40.0), st.integers(0, 10_000))
def test_exact_gibbs_on_gold_path_is_sequence_consistent_gift(lm, eta, pick):
    """Soft Bellman for r = eta 1[y = y*] gives, at gold prefixes, softmax(log pi0 + g_t onehot);
    elsewhere pi0 (theory.md section 3 derivation)."""
    seqs = lm.sequences()
    gold = seqs[pick % len(seqs)]
    idx, base, tokens = gold_path(lm, gold)
    assume(np.all(base[np.arange(len(tokens)), tokens] > 0))
    sb = soft_bellman(lm, gold_reward(lm, gold), eta)
    exact_tables = gold_path_policy(lm, gold, sequence_consistent_gift_target(base, tokens, eta))
    log_size = max(np.abs(lp[np.isfinite(lp)]).max() for lp in lm.log_probs)
    for d in range(lm.horizon):
        np.testing.assert_allclose(
            sb.policy[d],
            exact_tables[d],
            rtol=64 * lm.horizon * EPS * (1 + eta + log_size),
            atol=1e-300,
        )
    # and the gains are the advantage gap A(s*, y*) - A(s*, a) for a != y*
    gains = exact_gains(np.log(base[np.arange(len(tokens)), tokens]), eta)
    for d, (i, a) in enumerate(zip(idx, tokens)):
        other = (a + 1) % lm.vocab_size
        gap = sb.advantage(d)[i, a] - sb.advantage(d)[i, other]
        np.testing.assert_allclose(gap, gains[d], rtol=0, atol=64 * EPS * (1 + eta))


@given(tabular_lms(max_horizon=3), st.floats(0.5, 20.0), st.integers(0, 10_000))
def test_constant_beta_gift_overweights_gold_against_exact(lm, eta, pick):
    """With beta = eta at every token, g_t <= eta gives GIFT's path at least the exact gold mass."""
    seqs = lm.sequences()
    gold = seqs[pick % len(seqs)]
    idx, base, tokens = gold_path(lm, gold)
    assume(np.all(base[np.arange(len(tokens)), tokens] > 0))
    induced = np.exp(
        lm.sequence_log_probs(gold_path_policy(lm, gold, gift_target(base, tokens, eta)))
    )
    exact = exact_gold_gibbs(lm, gold, eta)
    gi = int(np.flatnonzero(gold_reward(lm, gold))[0])
    m = compare_sequence_distributions(induced, exact, gi)
    assert m["gold_mass"] >= m["gold_mass_exact"] * (1 - 1e-12)
    assert m["kl_to_exact"] >= -1e-12 and 0 <= m["tv"] <= 1 + 1e-12
    same = compare_sequence_distributions(exact, exact, gi)
    assert abs(same["kl_to_exact"]) < 1e-12 and same["tv"] == 0


def test_gift_target_limits():
    p = np.array([[0.2, 0.3, 0.5], [0.0, 0.4, 0.6]])
    gold = np.array([0, 2])
    np.testing.assert_allclose(gift_target(p, gold, 0.0), p, rtol=1e-15)
    np.testing.assert_array_equal(gift_target(p, gold, np.inf), np.eye(3)[gold])
    # beta = 1e4 is within e^-1e4 of one-hot
    np.testing.assert_allclose(gift_target(p, gold, 1e4), np.eye(3)[gold], rtol=0, atol=1e-300)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gift_target([[0.5, 0.5]], [2], 1.0), "gold has a token outside"),
        (lambda: gift_target([[0.5, 0.5]], [0], 1.0, smoothing=1.5), "smoothing must be in"),
        (lambda: gift_target([[0.5, 0.5]], [0], np.nan), "beta must be in"),
        (lambda: exact_gains([-1.0, 0.5], 1.0), "gold_logp must be"),
        (lambda: exact_gains([-1.0], -2.0), "eta must be in"),
    ],
)
def test_gift_functions_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_symbolic_checks_of_closed_forms_hold():
    results = check_all()
    assert results and all(results.values()), results
