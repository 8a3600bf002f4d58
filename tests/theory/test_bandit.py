"""The bandit Gibbs solver against theory.md section 1: hand cases, identities, limits, optimiser."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from giftlab.theory import (
    entropy,
    gibbs_policy,
    kl_divergence,
    kl_regularized_objective,
    log_partition,
    numerical_optimum,
)
from tests.conftest import EPS
from tests.theory.strategies import any_beta, base_probs, finite_beta, rewards


def _log_scale(p0, r, beta):
    """Largest magnitude of a log-space quantity the solver forms: the round-off unit."""
    log_p0 = np.log(p0[p0 > 0])
    return 1.0 + np.abs(log_p0).max() + (beta * np.abs(r).max() if np.isfinite(beta) else 0.0)


# -- hand-computed cases ----------------------------------------------------------------------


def test_gibbs_policy_hand_case():
    p0 = np.array([0.5, 0.25, 0.25])
    r = np.array([1.0, 0.0, 0.0])
    e = np.e
    np.testing.assert_allclose(
        gibbs_policy(p0, r, 1.0), np.array([0.5 * e, 0.25, 0.25]) / (0.5 * e + 0.5), rtol=1e-15
    )
    np.testing.assert_allclose(log_partition(p0, r, 1.0), np.log(0.5 * e + 0.5), rtol=1e-15)


def test_gibbs_policy_infinite_beta_keeps_base_ratios_on_argmax_set():
    p0 = np.array([0.1, 0.3, 0.2, 0.4])
    r = np.array([1.0, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(gibbs_policy(p0, r, np.inf), [0.25, 0.75, 0.0, 0.0], rtol=1e-15)


def test_gibbs_policy_infinite_beta_ignores_argmax_outside_support():
    p0 = np.array([0.0, 0.6, 0.4])
    r = np.array([5.0, 1.0, 0.0])
    np.testing.assert_array_equal(gibbs_policy(p0, r, np.inf), [0.0, 1.0, 0.0])


def test_log_partition_infinite_beta_limits():
    p0 = np.array([0.25, 0.75])
    assert log_partition(p0, [1.0, 0.0], np.inf) == np.inf
    assert log_partition(p0, [-1.0, -2.0], np.inf) == -np.inf
    np.testing.assert_allclose(log_partition(p0, [0.0, -2.0], np.inf), np.log(0.25))


def test_gibbs_policy_broadcasts_over_leading_axes():
    rng = np.random.default_rng(0)
    p0 = rng.dirichlet(np.ones(5), size=(3, 4))
    r = rng.normal(size=5)
    out = gibbs_policy(p0, r, 2.0)
    for i in range(3):
        for j in range(4):
            np.testing.assert_allclose(out[i, j], gibbs_policy(p0[i, j], r, 2.0), rtol=1e-14)


# -- properties ---------------------------------------------------------------------------------


@given(st.data(), any_beta)
def test_gibbs_policy_is_normalised_and_preserves_support(data, beta):
    p0 = data.draw(base_probs())
    r = data.draw(rewards(len(p0)))
    pi = gibbs_policy(p0, r, beta)
    assert np.all(np.isfinite(pi)) and np.all(pi >= 0)
    np.testing.assert_allclose(pi.sum(), 1.0, rtol=0, atol=8 * len(p0) * EPS)
    assert np.all(pi[p0 == 0] == 0)


@given(st.data(), finite_beta)
def test_gap_identity(data, beta):
    """J(pi) = log Z / beta - KL(pi || pi*) / beta for every pi on the base's support."""
    assume(beta > 0)
    p0 = data.draw(base_probs())
    r = data.draw(rewards(len(p0)))
    raw = np.array(data.draw(st.lists(st.floats(0, 1), min_size=len(p0), max_size=len(p0))))
    raw = np.where(p0 > 0, raw, 0.0)
    assume(raw.sum() > 0)
    pi = raw / raw.sum()
    log_z = log_partition(p0, r, beta)
    # KL(pi || pi*) in log space: pi* can underflow to 0 where pi > 0 (log pi* ~ -1e7)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_star = np.log(p0) + beta * r - log_z
        kl_star = np.sum(np.where(pi > 0, pi * (np.log(pi) - log_star), 0.0))
    lhs = kl_regularized_objective(pi, p0, r, beta)
    rhs = log_z / beta - kl_star / beta
    # round-off: log-space terms of size _log_scale, divided by beta, summed over K actions
    tol = 16 * len(p0) * EPS * _log_scale(p0, r, beta) / beta
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=tol)


@given(st.data(), finite_beta)
def test_gibbs_policy_maximises_objective(data, beta):
    assume(beta > 0)
    p0 = data.draw(base_probs())
    r = data.draw(rewards(len(p0)))
    star = gibbs_policy(p0, r, beta)
    j_star = kl_regularized_objective(star, p0, r, beta)
    np.testing.assert_allclose(
        j_star,
        log_partition(p0, r, beta) / beta,
        rtol=0,
        atol=16 * len(p0) * EPS * _log_scale(p0, r, beta) / beta,
    )
    other = gibbs_policy(p0, r, beta * 0.5)
    assert (
        kl_regularized_objective(other, p0, r, beta)
        <= j_star + 16 * EPS * _log_scale(p0, r, beta) / beta
    )


@given(st.data(), st.floats(0.05, 5.0))
def test_closed_form_agrees_with_numerical_optimiser(data, beta):
    p0 = data.draw(base_probs())
    assume(p0[p0 > 0].min() > 1e-9)  # L-BFGS reaches round-off only on well-scaled problems
    r = data.draw(st.lists(st.floats(-2.0, 2.0), min_size=len(p0), max_size=len(p0)))
    r = np.array(r)
    numeric = numerical_optimum(p0, r, beta)
    closed = gibbs_policy(p0, r, beta)
    np.testing.assert_allclose(numeric, closed, rtol=0, atol=1e-5)
    # the optimiser never beats the closed form (it is the maximum)
    j_closed = kl_regularized_objective(closed, p0, r, beta)
    assert kl_regularized_objective(numeric, p0, r, beta) <= j_closed + 1e-12


@given(st.data(), st.floats(1e-3, 1e4))
def test_zero_temperature_limit_with_derived_bound(data, beta):
    """|pi_beta - pi_inf|_1 <= 2 (1 - P) / P exp(-beta gap): P = pi0 mass on the argmax set,
    gap = best reward minus the best reward off the argmax set."""
    p0 = data.draw(base_probs())
    r = data.draw(rewards(len(p0)))
    support = p0 > 0
    r_best = r[support].max()
    top = support & (r == r_best)
    off = support & ~top
    limit = gibbs_policy(p0, r, np.inf)
    distance = np.abs(gibbs_policy(p0, r, beta) - limit).sum()
    if not off.any():
        bound = 0.0
    else:
        mass_top = p0[top].sum()
        gap = r_best - r[off].max()
        bound = 2 * (1 - mass_top) / mass_top * np.exp(-beta * gap)
    spread = r[support].max() - r[support].min()
    assert distance <= bound + 16 * len(p0) * EPS * (1 + beta * spread)


@given(st.data(), st.floats(0.0, 1.0))
def test_infinite_temperature_limit_with_derived_bound(data, beta):
    """|pi_beta(a) - pi0(a)| <= pi0(a) (exp(beta range(r)) - 1): the tilt ratio's bound."""
    p0 = data.draw(base_probs())
    r = data.draw(rewards(len(p0)))
    spread = r[p0 > 0].max() - r[p0 > 0].min()
    pi = gibbs_policy(p0, r, beta)
    s = p0 > 0
    with np.errstate(over="ignore"):
        assert np.all(np.abs(pi - p0)[s] <= p0[s] * np.expm1(beta * spread) + 16 * EPS)
    assert np.all(pi[~s] == 0)
    np.testing.assert_array_equal(gibbs_policy(p0, r, 0.0)[p0 == 0], 0.0)
    np.testing.assert_allclose(gibbs_policy(p0, r, 0.0), p0, rtol=0, atol=8 * EPS)


@given(st.data(), finite_beta, finite_beta)
def test_expected_reward_and_kl_are_monotone_in_beta(data, b1, b2):
    """d/dtau E[r] = -Var/tau^2 <= 0 and KL(pi* || pi0) non-increasing in tau (increasing in beta)."""
    lo, hi = sorted([b1, b2])
    p0 = data.draw(base_probs())
    r = data.draw(rewards(len(p0)))
    pi_lo, pi_hi = gibbs_policy(p0, r, lo), gibbs_policy(p0, r, hi)
    scale = np.abs(r).max() + 1.0
    assert pi_hi @ r >= pi_lo @ r - 16 * EPS * scale
    kl_scale = _log_scale(p0, r, hi)
    assert kl_divergence(pi_hi, p0) >= kl_divergence(pi_lo, p0) - 16 * len(p0) * EPS * kl_scale


@given(st.data(), st.floats(0.1, 3.0))
def test_reward_derivative_is_variance(data, beta):
    """d/dbeta E[r] = Var(r) (i.e. d/dtau E[r] = -Var/tau^2), by central differences.

    Truncation error of the central difference is h^2/6 |third cumulant| <= h^2/6 (2 max|r|)^3.
    """
    p0 = data.draw(base_probs())
    r = np.array(data.draw(st.lists(st.floats(-1, 1), min_size=len(p0), max_size=len(p0))))
    h = 1e-4
    slope = (gibbs_policy(p0, r, beta + h) @ r - gibbs_policy(p0, r, beta - h) @ r) / (2 * h)
    pi = gibbs_policy(p0, r, beta)
    var = pi @ r**2 - (pi @ r) ** 2
    assert abs(slope - var) <= h**2 / 6 * 8 + 1e4 * EPS / h


def test_entropy_and_kl_hand_values():
    np.testing.assert_allclose(entropy([0.5, 0.5, 0.0]), np.log(2), rtol=1e-15)
    np.testing.assert_allclose(kl_divergence([1.0, 0.0], [0.5, 0.5]), np.log(2), rtol=1e-15)
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"base_probs": [0.5, -0.1, 0.6]}, "base_probs contains negative"),
        ({"base_probs": [0.5, np.nan, 0.5]}, "base_probs contains NaN"),
        ({"base_probs": [0.5, 0.6, 0.1]}, "base_probs is not normalised"),
        ({"reward": [1.0, 2.0]}, "reward has shape"),
        ({"reward": [1.0, np.inf, 0.0]}, "reward contains NaN or infinite"),
        ({"beta": -1.0}, "beta must be in"),
        ({"beta": np.nan}, "beta must be in"),
        ({"beta": "hot"}, "beta must be a number"),
    ],
)
def test_gibbs_policy_rejects_bad_input(kwargs, match):
    args = {"base_probs": [0.2, 0.3, 0.5], "reward": [1.0, 0.0, 0.0], "beta": 1.0} | kwargs
    with pytest.raises(ValueError, match=match):
        gibbs_policy(**args)


def test_objective_rejects_mismatched_policy_shape():
    with pytest.raises(ValueError, match="policy has shape"):
        kl_regularized_objective([0.5, 0.5], [0.2, 0.3, 0.5], [1, 0, 0], 1.0)


def test_tiny_unnormalisation_within_tolerance_is_accepted():
    p0 = np.array([0.2, 0.3, 0.5]) * (1 + 1e-9)
    np.testing.assert_allclose(gibbs_policy(p0, [0, 0, 0], 1.0), [0.2, 0.3, 0.5], rtol=1e-14)
