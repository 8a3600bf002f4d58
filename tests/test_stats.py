"""giftlab.stats: intervals reach their nominal coverage on simulated data with a known truth;
the power helper matches the normal-approximation formula by hand and a simulation."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from giftlab.stats import (
    binomial_ci,
    clustered_mean_ci,
    minimum_detectable_difference,
    paired_difference,
    paired_pass_at_k_difference,
)


def _consistent_with(hits: int, trials: int, nominal: float) -> bool:
    """The coverage count is what a `nominal` coverage gives, at the 0.1% level (binomial)."""
    return sps.binomtest(hits, trials, nominal).pvalue > 1e-3


@pytest.mark.parametrize("method, n", [("t", 10), ("t", 20), ("bca", 20)])
def test_paired_difference_reaches_nominal_coverage(method, n):
    rng = np.random.default_rng(0)
    truth, trials, hits = 0.03, 300, 0
    for _ in range(trials):
        sft = rng.normal(0.6, 0.1, n)  # seed-to-seed variation shared by the pair
        gift = sft + truth + rng.normal(0, 0.02, n)
        r = paired_difference(gift, sft, method=method)
        hits += r["low"] <= truth <= r["high"]
    assert _consistent_with(hits, trials, 0.95), hits


def test_clustered_bootstrap_over_problems_reaches_nominal_coverage():
    """Problems differ in difficulty (p_i ~ Beta(2, 3)); 8 samples each. The interval for the mean
    accuracy resamples problems; resampling samples instead would under-cover."""
    rng = np.random.default_rng(1)
    truth, trials, hits = 2 / 5, 300, 0
    for _ in range(trials):
        p = rng.beta(2, 3, 80)
        acc = rng.binomial(8, p) / 8
        r = clustered_mean_ci(acc)
        hits += r["low"] <= truth <= r["high"]
    assert _consistent_with(hits, trials, 0.95), hits


def test_exact_binomial_interval_covers_at_least_nominally():
    rng = np.random.default_rng(2)
    truth, trials = 0.1, 400
    hits = 0
    for _ in range(trials):
        lo, hi = binomial_ci(rng.binomial(50, truth), 50)
        hits += lo <= truth <= hi
    assert hits / trials >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials), hits


def test_minimum_detectable_difference_by_hand():
    # (1.959964 + 0.841621) * sqrt(2 * 0.25 / 100): the textbook two-proportion formula
    assert minimum_detectable_difference(0.5, 100) == pytest.approx(
        2.801585 * math.sqrt(0.005), rel=1e-5
    )
    # clustering: 16 problems x 8 samples x 2 seeds at icc 0.3 resolves far less than 256 iid draws
    iid = minimum_detectable_difference(0.2, 16, 8, 2)
    clustered = minimum_detectable_difference(0.2, 16, 8, 2, icc=0.3)
    assert clustered == pytest.approx(iid * math.sqrt(1 + 15 * 0.3), rel=1e-12)


def test_minimum_detectable_difference_has_the_stated_power_by_simulation():
    """Two methods whose true rates differ by the MDD: a two-sided two-proportion z-test at 0.05
    rejects in about 80% of simulated designs."""
    rng = np.random.default_rng(3)
    p, n = 0.3, 400
    d = minimum_detectable_difference(p, n)
    trials = 4000
    a = rng.binomial(n, p - d / 2, trials) / n
    b = rng.binomial(n, p + d / 2, trials) / n
    pooled = (a + b) / 2
    z = (b - a) / np.sqrt(2 * pooled * (1 - pooled) / n)
    power = float((np.abs(z) > sps.norm.ppf(0.975)).mean())
    assert abs(power - 0.8) < 0.03, power


def test_paired_pass_at_k_difference_is_zero_for_identical_methods_and_signed_otherwise():
    c = np.array([0, 1, 4, 8, 3])
    same = paired_pass_at_k_difference(c, c, n=8, k=4)
    assert same["mean"] == same["low"] == same["high"] == 0.0
    better = paired_pass_at_k_difference(np.minimum(c + 2, 8), c, n=8, k=1)
    assert better["mean"] > 0 and better["n"] == 5


def test_paired_difference_counts_wins_and_rejects_bad_input():
    r = paired_difference([1.0, 2.0, 3.0], [0.0, 2.0, 4.0])
    assert (r["wins"], r["ties"], r["n"]) == (1, 1, 3)
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([1.0], [0.0])
    with pytest.raises(ValueError, match="finite"):
        paired_difference([1.0, np.nan], [0.0, 0.0])


def test_paired_minimum_detectable_difference_by_hand_and_by_simulation():
    from giftlab.stats import minimum_detectable_paired_difference

    assert minimum_detectable_paired_difference(0.02, 16) == pytest.approx(
        2.801585 * 0.005, rel=1e-5
    )
    rng = np.random.default_rng(4)
    sd, n = 0.05, 40
    d = minimum_detectable_paired_difference(sd, n)
    diffs = rng.normal(d, sd, (4000, n))
    z = diffs.mean(1) / (sd / math.sqrt(n))  # known-variance test, as the formula assumes
    assert abs(float((np.abs(z) > sps.norm.ppf(0.975)).mean()) - 0.8) < 0.03


def test_paired_problem_difference_is_the_clustered_ci_of_the_difference_and_its_mdd():
    from giftlab.stats import (
        clustered_mean_ci,
        minimum_detectable_paired_difference,
        paired_problem_difference,
    )

    rng = np.random.default_rng(3)
    a, b = rng.random(40), rng.random(40)
    got = paired_problem_difference(a, b)
    ci = clustered_mean_ci(a - b)
    assert got["mean"] == pytest.approx(float(np.mean(a) - np.mean(b)))
    assert (got["low"], got["high"]) == (ci["low"], ci["high"])
    sd = float(np.sqrt(np.sum((a - b - np.mean(a - b)) ** 2) / 39))  # ddof = 1 by hand
    assert got["mdd"] == pytest.approx(minimum_detectable_paired_difference(sd, 40))


def _crossed(rng, truth, seeds, problems, sd_seed, sd_problem, sd_noise):
    """d_sp = truth + a_s + b_p + e_sp: a training seed shifts every problem, a problem every seed."""
    a = rng.normal(0, sd_seed, (seeds, 1))
    b = rng.normal(0, sd_problem, (1, problems))
    return truth + a + b + rng.normal(0, sd_noise, (seeds, problems))


@pytest.mark.parametrize(
    "sd_seed, sd_problem",
    [(0.03, 0.2), (0.0, 0.2), (0.08, 0.05)],  # the size seen (SFT pass@1 0.08 vs 0.13), none, large
)
def test_seed_problem_difference_covers_with_five_training_seeds(sd_seed, sd_problem):
    """>= 90% at nominal 95% with 5 seeds and 300 problems (the issue's bar), whichever source of
    variation dominates; the problem-only clustered interval under-covers when seeds vary."""
    from giftlab.stats import seed_problem_difference

    rng = np.random.default_rng(3)
    truth, trials, hits, clustered_hits = 0.05, 400, 0, 0
    for _ in range(trials):
        d = _crossed(rng, truth, 5, 300, sd_seed, sd_problem, 0.25)
        r = seed_problem_difference(d)
        hits += r["low"] <= truth <= r["high"]
        if sd_seed >= 0.08 and _ < 60:  # the old interval: problems only, seeds averaged
            c = clustered_mean_ci(d.mean(0))
            clustered_hits += c["low"] <= truth <= c["high"]
    assert hits / trials >= 0.90, hits
    assert hits / trials <= 0.995, hits  # not uselessly wide either
    if sd_seed >= 0.08:
        assert clustered_hits / 60 < 0.8, clustered_hits


def test_seed_problem_difference_by_hand_and_with_one_seed():
    from giftlab.stats import seed_problem_difference

    d = np.array([[0.0, 0.2, 0.1], [0.2, 0.4, 0.3]])  # seed 2 is +0.2 everywhere: no residual
    r = seed_problem_difference(d)
    # MS_seed = 3 * (0.1^2 + 0.1^2) / 1 = 0.06; MS_problem = 2 * (0.01 + 0.01) / 2 = 0.02; MS_res 0
    assert r["mean"] == pytest.approx(0.2)
    assert r["se"] == pytest.approx(math.sqrt((0.06 + 0.02) / 6))
    assert r["per_seed"] == pytest.approx([0.1, 0.3])
    one = seed_problem_difference(d[:1])
    assert one["n_seeds"] == 1 and math.isnan(one["low"]) and math.isnan(one["mdd"])


def test_variance_components_recover_simulated_ones_and_predict_the_spread_of_the_mean():
    """Crossed seeds x problems drawn from d = delta + a_s + b_p + e_sp with known variances: the
    components' Monte Carlo means lie within 4 Monte Carlo standard errors of the truth, and the
    predicted SE equals the SD of the grand mean over simulations within 4 of its standard errors."""
    import math

    from giftlab.stats import predicted_resolution, variance_components

    rng = np.random.default_rng(0)
    true = {"seed": 0.004, "problem": 0.02, "residual": 0.05}
    s, p, sims = 4, 150, 600
    est, means = [], []
    for _ in range(sims):
        d = (
            0.01
            + rng.normal(0, math.sqrt(true["seed"]), (s, 1))
            + rng.normal(0, math.sqrt(true["problem"]), (1, p))
            + rng.normal(0, math.sqrt(true["residual"]), (s, p))
        )
        est.append(variance_components(d))
        means.append(d.mean())
    for key, value in true.items():
        got = np.array([e[key] for e in est])
        assert abs(got.mean() - value) <= 4 * got.std(ddof=1) / math.sqrt(sims), key
    se = predicted_resolution(true, s, p)["se"]
    sd = float(np.std(means, ddof=1))
    assert abs(se - sd) <= 4 * sd / math.sqrt(2 * (sims - 1))
    assert se == pytest.approx(
        math.sqrt(true["seed"] / s + true["problem"] / p + true["residual"] / (s * p)), rel=1e-12
    )


def test_the_residual_scale_multiplies_only_the_residual_term():
    import math

    from giftlab.stats import predicted_resolution

    comp = {"seed": 0.001, "problem": 0.01, "residual": 0.08}
    got = predicted_resolution(comp, 5, 300, residual_scale=0.5)["se"]
    assert got == pytest.approx(math.sqrt(0.001 / 5 + 0.01 / 300 + 0.5 * 0.08 / 1500), rel=1e-12)
    more_seeds = predicted_resolution(comp, 10, 300)
    assert more_seeds["mdd"] < predicted_resolution(comp, 5, 300)["mdd"]
    with pytest.raises(ValueError, match="seeds >= 2"):
        predicted_resolution(comp, 1, 300)
