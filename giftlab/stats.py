"""Statistics for comparisons under randomness, once: paired differences over seeds, clustered
bootstrap over problems, exact binomial intervals, and the smallest difference a design resolves.

The unit that varies is the seed (simulator runs) or the problem (evaluations): samples within a
problem are not independent, so intervals resample problems, never samples. Built on scipy.stats
(`bootstrap`, `binomtest`, `t`, `norm`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from giftlab.diagnostics.sampling import pass_at_k

__all__ = [
    "binomial_ci",
    "format_paired",
    "paired_vs_sft",
    "per_problem_values",
    "seeds_done",
    "clustered_mean_ci",
    "minimum_detectable_difference",
    "minimum_detectable_paired_difference",
    "paired_difference",
    "paired_pass_at_k_difference",
    "predicted_resolution",
    "variance_components",
]


def _bca_mean_interval(values: np.ndarray, confidence: float, seed: int) -> tuple[float, float]:
    """scipy.stats.bootstrap's BCa interval for the mean (9999 resamples); a point if constant."""
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    res = sps.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        method="BCa",
        n_resamples=9999,
        random_state=seed,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_difference(a, b, confidence: float = 0.95, method: str = "t", seed: int = 0) -> dict:
    """Mean of the paired differences a_i - b_i (e.g. GIFT minus SFT on the same seed) with a
    confidence interval, the wins (a_i > b_i) out of n, and the interval's half-width.

    method: "t" (Student t on the differences: exact coverage for normal differences, and the
    default because seeds are few) or "bca" (scipy.stats.bootstrap, BCa, 9999 resamples; needs
    n >= 3 and varying differences).
    Returns {mean, low, high, half_width, wins, ties, n, method, sd (of the differences)}.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"need at least 2 paired values, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("paired values must be finite")
    n, mean = len(d), float(d.mean())
    if method == "t":
        se = float(d.std(ddof=1)) / math.sqrt(n)
        q = float(sps.t.ppf(0.5 + confidence / 2, n - 1))
        low, high = mean - q * se, mean + q * se
    elif method == "bca":
        low, high = _bca_mean_interval(d, confidence, seed)
    else:
        raise ValueError(f"method must be t or bca, got {method!r}")
    return {
        "mean": mean,
        "low": low,
        "high": high,
        "half_width": (high - low) / 2,
        "wins": int((d > 0).sum()),
        "ties": int((d == 0).sum()),
        "n": n,
        "method": method,
        "sd": float(d.std(ddof=1)),
    }


def clustered_mean_ci(values, confidence: float = 0.95, seed: int = 0) -> dict:
    """Mean over problems of a per-problem quantity (a problem's pass@k, its accuracy, or the
    paired difference of two methods on it) with a bootstrap CI that resamples problems.

    values: (P,) one number per problem.  Returns {mean, low, high, half_width, n}.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) < 2:
        raise ValueError(f"need at least 2 problems, got shape {v.shape}")
    mean = float(v.mean())
    low, high = _bca_mean_interval(v, confidence, seed)
    return {"mean": mean, "low": low, "high": high, "half_width": (high - low) / 2, "n": len(v)}


def paired_problem_difference(a, b, confidence: float = 0.95) -> dict:
    """Method A minus method B on the same problems, from one value per problem each:
    clustered_mean_ci of d = a - b, plus mdd, the smallest mean difference the design resolves
    (minimum_detectable_paired_difference with the SD of d over its P problems).

    Returns {mean, low, high, half_width, n, mdd}.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    out = clustered_mean_ci(d, confidence)
    out["mdd"] = minimum_detectable_paired_difference(float(np.std(d, ddof=1)), len(d))
    return out


def paired_pass_at_k_difference(c_a, c_b, n: int, k: int, confidence: float = 0.95) -> dict:
    """pass@k of method A minus method B on the same problems (unbiased estimator per problem from
    c correct of n samples), with a clustered bootstrap CI over problems."""
    c_a, c_b = np.asarray(c_a), np.asarray(c_b)
    if c_a.shape != c_b.shape:
        raise ValueError(f"per-problem counts differ in shape: {c_a.shape} vs {c_b.shape}")
    return clustered_mean_ci(pass_at_k(n, c_a, k) - pass_at_k(n, c_b, k), confidence)


def binomial_ci(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a proportion: scipy.stats.binomtest."""
    res = sps.binomtest(int(successes), int(trials))
    ci = res.proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def minimum_detectable_difference(
    base_rate: float,
    problems: int,
    samples: int = 1,
    seeds: int = 1,
    icc: float = 0.0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """The smallest difference in a success rate (e.g. pass@1) between two methods that a design
    resolves with a two-sided test at `alpha` with `power` (normal approximation):

        MDD = (z_{1 - alpha/2} + z_power) sqrt(2 p (1 - p) deff / (problems samples seeds))
        deff = 1 + (samples seeds - 1) icc        (samples of one problem are correlated)

    icc: intra-problem correlation of outcomes (0: independent samples; a problem's difficulty
    makes it positive: 1 makes every sample of a problem one draw).
    """
    if not 0 < base_rate < 1:
        raise ValueError(f"base_rate must be in (0, 1), got {base_rate}")
    if min(problems, samples, seeds) < 1:
        raise ValueError("problems, samples and seeds must be >= 1")
    if not 0 <= icc <= 1:
        raise ValueError(f"icc must be in [0, 1], got {icc}")
    m = samples * seeds
    deff = 1 + (m - 1) * icc
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    return z * math.sqrt(2 * base_rate * (1 - base_rate) * deff / (problems * m))


def minimum_detectable_paired_difference(
    sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest mean paired difference (e.g. over seeds) a design with n pairs resolves with a
    two-sided test at `alpha` with `power`, given the SD of the differences (normal approximation):

        MDD = (z_{1 - alpha/2} + z_power) sd_diff / sqrt(n)
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if not (sd_diff >= 0 and math.isfinite(sd_diff)):
        raise ValueError(f"sd_diff must be finite and >= 0, got {sd_diff}")
    return float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) * sd_diff / math.sqrt(n)


def summary_row(d: dict) -> dict:
    """The columns every seed-paired figure summary writes, from a `paired_difference` result:
    diff_mean, low, high, wins, n and mdd (the smallest difference the design resolves)."""
    return {
        "diff_mean": d["mean"],
        "low": d["low"],
        "high": d["high"],
        "wins": d["wins"],
        "n": d["n"],
        "mdd": minimum_detectable_paired_difference(d["sd"], d["n"]),
    }


def seed_problem_difference(diffs, confidence: float = 0.95) -> dict:
    """Method A minus method B over training seeds and problems together.

    diffs: (S, P) the per-problem difference a - b for each of S training seeds, on the same P
    problems (a crossed design). Model: d_sp = delta + a_s + b_p + e_sp, with a training-seed
    effect a_s, a problem effect b_p and noise e_sp. The two-way mean squares (method of moments)
    give the variance of the grand mean without assuming either source away:

        Var(mean) = sigma_a^2 / S + sigma_b^2 / P + sigma_e^2 / (S P)
                  = (MS_seed + MS_problem - MS_residual) / (S P)

    and the interval is mean +- t_df SE with Satterthwaite's df for that sum (at most S - 1 when
    the seeds dominate: a handful of seeds gives a wide interval, as it should). The resolvable
    difference: mdd = (t_df(1 - alpha/2) + t_df(0.8)) SE. S = 1: the seed variance cannot be
    estimated, so low = high = mdd = NaN ("not decidable with one training seed").
    Naive equivalent: a t-interval over seed means when P is large.

    Returns {mean, low, high, se, df, mdd, n_seeds, n_problems, per_seed}.
    """
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 2 or d.shape[1] < 2:
        raise ValueError(f"diffs must be (seeds, problems) with >= 2 problems, got {d.shape}")
    s, p = d.shape
    mean = float(d.mean())
    seed_means = d.mean(1)
    out = {"mean": mean, "n_seeds": s, "n_problems": p, "per_seed": seed_means.tolist()}
    if s < 2:
        return out | {"low": math.nan, "high": math.nan, "se": math.nan, "df": 0, "mdd": math.nan}
    ms_seed, ms_problem, ms_resid = _mean_squares(d)
    var = max(ms_seed + ms_problem - ms_resid, ms_resid) / (s * p)  # never below the noise term
    num = (ms_seed + ms_problem - ms_resid) ** 2
    den = ms_seed**2 / (s - 1) + ms_problem**2 / (p - 1) + ms_resid**2 / ((s - 1) * (p - 1))
    df = float(min(max(num / den, 1.0), (s - 1) * p)) if den > 0 else float(s - 1)
    se = math.sqrt(var)
    t = float(sps.t.ppf(0.5 + confidence / 2, df))
    mdd = (t + float(sps.t.ppf(0.8, df))) * se
    return out | {"low": mean - t * se, "high": mean + t * se, "se": se, "df": df, "mdd": mdd}


def _mean_squares(d: np.ndarray) -> tuple[float, float, float]:
    """The two-way mean squares (seed, problem, residual) of a crossed (S, P) table."""
    s, p = d.shape
    mean = d.mean()
    seed_means, problem_means = d.mean(1), d.mean(0)
    ms_seed = p * float(((seed_means - mean) ** 2).sum()) / (s - 1)
    ms_problem = s * float(((problem_means - mean) ** 2).sum()) / (p - 1)
    resid = d - seed_means[:, None] - problem_means[None, :] + mean
    return ms_seed, ms_problem, float((resid**2).sum()) / ((s - 1) * (p - 1))


def variance_components(diffs) -> dict:
    """The variance components of seed_problem_difference's model d_sp = delta + a_s + b_p + e_sp
    from a crossed (S, P) table of paired differences (S >= 2 training seeds, P >= 2 problems),
    by the method of moments (expected mean squares), negative estimates set to 0:

        sigma_e^2 = MS_residual
        sigma_a^2 = (MS_seed - MS_residual) / P          (training seed)
        sigma_b^2 = (MS_problem - MS_residual) / S       (problem)

    Returns {seed, problem, residual, n_seeds, n_problems, mean}.
    """
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 2:
        raise ValueError(f"diffs must be (seeds >= 2, problems >= 2), got shape {d.shape}")
    s, p = d.shape
    ms_seed, ms_problem, ms_resid = _mean_squares(d)
    return {
        "seed": max((ms_seed - ms_resid) / p, 0.0),
        "problem": max((ms_problem - ms_resid) / s, 0.0),
        "residual": ms_resid,
        "n_seeds": s,
        "n_problems": p,
        "mean": float(d.mean()),
    }


def predicted_resolution(
    components: dict, seeds: int, problems: int, residual_scale: float = 1.0
) -> dict:
    """What seed_problem_difference would give, on average, for a design of `seeds` training
    seeds and `problems` problems, from `variance_components`: the expected mean squares

        E MS_seed = P sigma_a^2 + sigma_e^2,  E MS_problem = S sigma_b^2 + sigma_e^2,
        E MS_residual = sigma_e^2  (sigma_e^2 times residual_scale: e.g. n / n' for n' samples)

    put into its SE, Satterthwaite df, half-width (t_df(0.975) SE) and mdd
    ((t_df(0.975) + t_df(0.8)) SE). Returns {se, df, half_width, mdd}.
    """
    if seeds < 2 or problems < 2:
        raise ValueError(f"need seeds >= 2 and problems >= 2, got {seeds} and {problems}")
    e = components["residual"] * residual_scale
    ms_seed = problems * components["seed"] + e
    ms_problem = seeds * components["problem"] + e
    var = max(ms_seed + ms_problem - e, e) / (seeds * problems)
    num = (ms_seed + ms_problem - e) ** 2
    den = ms_seed**2 / (seeds - 1) + ms_problem**2 / (problems - 1)
    den += e**2 / ((seeds - 1) * (problems - 1))
    df = float(min(max(num / den, 1.0), (seeds - 1) * problems)) if den > 0 else float(seeds - 1)
    se = math.sqrt(var)
    t = float(sps.t.ppf(0.975, df))
    return {"se": se, "df": df, "half_width": t * se, "mdd": (t + float(sps.t.ppf(0.8, df))) * se}


# -- the pipeline's results: each start minus SFT, paired on problems and training seeds ------


def seeds_done(results: list[dict]) -> list[int]:
    """Training seeds with at least one evaluated init (a stopped run may have fewer than asked)."""
    return sorted({r["seed"] for r in results if r["init"] != "base"})


def per_problem_values(rows: list[dict], key: str, n: int):
    """Per-problem values of `key` averaged over the rows' seeds (None if not per-problem)."""
    if key.startswith("pass@") and all("per_problem_correct" in r for r in rows):
        k = int(key[5:])
        return np.mean([pass_at_k(n, np.array(r["per_problem_correct"]), k) for r in rows], 0)
    if key == "distinct_correct" and all("per_problem_distinct_correct" in r for r in rows):
        return np.mean([np.array(r["per_problem_distinct_correct"], float) for r in rows], 0)
    if key.startswith("drift/") and all(key in r for r in rows):
        return np.mean([np.array(r[key], float) for r in rows], 0)
    return None


def paired_vs_sft(
    results: list[dict], n_samples: int, keys: list[str], against: str = "sft"
) -> list[dict]:
    """Each init minus `against` (SFT), per stage and metric, on the same problems and training
    seeds: {init, stage, metric, mean, low, high, n, n_seeds, mdd, per_seed}. low/high: the 95%
    CI over training seeds and problems together (`giftlab.stats.seed_problem_difference`: NaN
    with one training seed, which cannot show training variation); mdd: the smallest difference
    the design resolves; per_seed: {seed: mean difference with that seed alone}."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["init"], r["stage"]), []).append(r)
    out = []
    for (init, stage), rs in groups.items():
        ref = groups.get((against, stage))
        if init in (against, "base") or ref is None:
            continue
        by_seed = {r["seed"]: r for r in ref}
        rs = [r for r in rs if r["seed"] in by_seed]  # pairs only: a stopped run may lack some
        if not rs:
            continue
        for k in keys:
            rows = [
                (
                    per_problem_values([r], k, n_samples),
                    per_problem_values([by_seed[r["seed"]]], k, n_samples),
                )
                for r in rs
            ]
            if any(a is None or b is None or len(a) < 2 for a, b in rows):
                continue
            ci = seed_problem_difference(np.array([a - b for a, b in rows]))
            out.append(
                {
                    "init": init,
                    "stage": stage,
                    "metric": k,
                    "mean": ci["mean"],
                    "low": ci["low"],
                    "high": ci["high"],
                    "n": ci["n_problems"],
                    "n_seeds": ci["n_seeds"],
                    "mdd": ci["mdd"],
                    "per_seed": {r["seed"]: v for r, v in zip(rs, ci["per_seed"])},
                }
            )
    return out


def format_paired(d: dict) -> str:
    """A `paired_vs_sft` row in words: the difference, its 95% CI over training seeds and
    problems, the resolvable difference, the number of training seeds and each seed's own."""
    seeds = ", ".join(f"{v:+.3f}" for v in d["per_seed"].values())
    if d.get("n_seeds", len(d["per_seed"])) < 2:
        return f"{d['mean']:+.3f}, 1 training seed (no interval: training variation unmeasured)"
    return (
        f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], resolvable {d['mdd']:.3f}, "
        f"{d['n_seeds']} training seeds ({seeds})"
    )
