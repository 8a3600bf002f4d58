"""`giftlab plan RESULTS.json`: which design decides the question, and what it costs here.

From a pipeline's results with two or more training seeds (one results.json), for each start
minus `against` (SFT) and each metric: the variance components of the crossed design
(giftlab.stats.variance_components: training seed, problem, residual), then, for candidate
designs (training seeds x problems x samples), the half-width of the 95% interval over seeds and
problems and the smallest difference the design resolves (giftlab.stats.predicted_resolution),
beside the CPU minutes it would take:

    minutes = starts x seeds x (F + E x problems x samples / 2400) + E x problems x samples / 2400

with F the fine-tuning minutes of one cell and E the minutes to evaluate 300 problems x 8
samples (the base is evaluated once). Changing the samples per problem rescales only the
sampling part of the residual of pass@1 (a problem's c of n correct: variance c/n (1 - c/n) /
(n - 1) per method); other metrics are planned at the samples they were measured with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from giftlab.errors import InputError
from giftlab.provenance import write_csv
from giftlab.results import load_results
from giftlab.stats import (
    per_problem_values,
    predicted_resolution,
    seed_problem_difference,
    variance_components,
)

# One cell on the 2-core CPU here (SmolLM2-135M-Instruct, the few-shot sweep's settings, fast
# sampler): E, the evaluation of 300 problems x 8 samples, 3.2 min (scripts/bench_eval.py,
# paper_figures/benchmarks/bench_eval_cpu.csv); F, the rest of a cell (fine-tune with held-out CE
# selection, drift on the demonstrations), 6.1 min (the campaign's kd_base seed-2 cell took 9.3
# min in all). Override with --finetune-min and --eval-min on another machine.
FINETUNE_MIN = 6.1
EVAL_MIN = 3.2


@dataclass
class Design:
    seeds: int
    problems: int
    samples: int


def _pairs(results: list[dict], init: str, against: str, stage: str):
    ref = {r["seed"]: r for r in results if r["init"] == against and r["stage"] == stage}
    return [
        (r, ref[r["seed"]])
        for r in sorted(results, key=lambda r: r["seed"])
        if r["init"] == init and r["stage"] == stage and r["seed"] in ref
    ]


def _sampling_variance(pairs, n: int) -> float:
    """Mean over seeds and problems of the sampling variance of a problem's pass@1 difference."""
    v = []
    for a, b in pairs:
        for row in (a, b):
            c = np.asarray(row["per_problem_correct"], float) / n
            v.append(c * (1 - c) / max(n - 1, 1))
    return float(np.sum(v, 0).mean() / len(pairs))


def _planned(comp: dict, mean: float, sampling, design) -> list[dict]:
    """The planned rows of one start and metric: each candidate seeds x problems x samples with
    its predicted half-width and resolvable difference (more samples shrink only the sampling
    share of the residual variance, known for pass@1) and its CPU minutes here."""
    seeds, problems, samples, n, n_starts, finetune_min, eval_min = design
    rows = []
    for s in seeds:
        for p in problems:
            for k in samples:
                if k != n and sampling is None:
                    continue
                scale = 1.0
                if k != n:
                    part = min(sampling, comp["residual"])
                    scale = (comp["residual"] - part + part * n / k) / comp["residual"]
                pred = predicted_resolution(comp, s, p, scale)
                evals = eval_min * p * k / 2400
                rows.append(
                    {
                        "design": "planned",
                        "seeds": s,
                        "problems": p,
                        "samples": k,
                        "mean": mean,
                        "half_width": pred["half_width"],
                        "mdd": pred["mdd"],
                        "cpu_min": n_starts * s * (finetune_min + evals) + evals,
                    }
                )
    return rows


def metric_choices(rows: list[dict], n: int) -> list[str]:
    """The metrics with per-problem values in every row (what the planner can take apart)."""
    out = []
    if rows and all("per_problem_correct" in r for r in rows):
        out += [f"pass@{k}" for k in range(1, n + 1)]
    if rows and all("per_problem_distinct_correct" in r for r in rows):
        out.append("distinct_correct")
    drift = {k for r in rows for k in r if k.startswith("drift/") and isinstance(r[k], list)}
    out += sorted(k for k in drift if all(isinstance(r.get(k), list) for r in rows))
    return out


def _check_choices(rows: list[dict], n: int, against: str, metrics) -> None:
    names = sorted({r["init"] for r in rows})
    if against not in names:
        raise InputError(
            f"--against {against!r}: no start of that name in these results "
            f"(starts: {', '.join(names)})"
        )
    # the base has no drift (it is the reference): only the compared starts need a metric
    pool = [r for r in rows if r["init"] != "base" or against == "base"] or rows
    choices = metric_choices(pool, n)
    unknown = [m for m in metrics if m not in choices]
    if unknown or not metrics:
        shown = [c for c in choices if not c.startswith("pass@")]
        passes = f"pass@1 .. pass@{n}" if f"pass@{n}" in choices else None
        allowed = ", ".join([p for p in [passes] if p] + shown) or "none"
        raise InputError(
            f"--metrics {','.join(unknown) or '(empty)'}: not a per-problem metric of these "
            f"results ({n} samples a problem); choose from {allowed}"
        )


def plan(
    results: dict,
    against: str = "sft",
    metrics=("pass@1", "pass@8", "distinct_correct"),
    seeds=(2, 3, 5, 8, 10),
    problems=(300, 600),
    samples=(8, 16),
    finetune_min: float = FINETUNE_MIN,
    eval_min: float = EVAL_MIN,
) -> list[dict]:
    """One row per start, metric and candidate design (the measured design first, marked)."""

    rows_in = results["results"]
    n = int(results["config"]["eval_samples"])
    starts = list(results["config"]["inits"])
    _check_choices(rows_in, n, against, metrics)
    stages = sorted({r["stage"] for r in rows_in})
    out = []
    for stage in stages:
        for init in starts:
            if init == against:
                continue
            pairs = _pairs(rows_in, init, against, stage)
            if len(pairs) < 2:
                continue
            for metric in metrics:
                diffs = [
                    (per_problem_values([a], metric, n), per_problem_values([b], metric, n))
                    for a, b in pairs
                ]
                if any(x is None or y is None for x, y in diffs):
                    continue
                d = np.array([x - y for x, y in diffs])
                comp = variance_components(d)
                now = seed_problem_difference(d)
                sampling = _sampling_variance(pairs, n) if metric == "pass@1" else None
                base = {"stage": stage, "init": init, "against": against, "metric": metric}
                base |= {f"var_{k}": comp[k] for k in ("seed", "problem", "residual")}
                out.append(
                    base
                    | {
                        "design": "measured",
                        "seeds": d.shape[0],
                        "problems": d.shape[1],
                        "samples": n,
                        "mean": now["mean"],
                        "half_width": (now["high"] - now["low"]) / 2,
                        "mdd": now["mdd"],
                        "cpu_min": float("nan"),
                    }
                )
                design = (seeds, problems, samples, n, len(starts), finetune_min, eval_min)
                out += [base | row for row in _planned(comp, now["mean"], sampling, design)]
    if not out:
        raise InputError(
            f"no start has two or more training seeds paired with {against!r} in these results "
            "(the planner needs the seed-to-seed variation: run a second seed with --resume)"
        )
    return out


def plan_table(rows: list[dict]) -> str:
    """A plain-text table of `plan`'s rows, one block per start and metric."""
    lines = []
    key = None
    for r in rows:
        k = (r["stage"], r["init"], r["metric"])
        if k != key:
            key = k
            lines.append(
                f"\n{r['init']} - {r['against']} ({r['stage']}), {r['metric']}: mean "
                f"{r['mean']:+.4f}; variance: training seed {r['var_seed']:.2e}, problem "
                f"{r['var_problem']:.2e}, residual {r['var_residual']:.2e}"
            )
            lines.append(
                f"  {'design':9} {'seeds':>5} {'problems':>8} {'samples':>7} "
                f"{'95% CI +-':>10} {'resolves':>9} {'CPU min':>8}"
            )
        cost = "" if np.isnan(r["cpu_min"]) else f"{r['cpu_min']:8.0f}"
        lines.append(
            f"  {r['design']:9} {r['seeds']:5d} {r['problems']:8d} {r['samples']:7d} "
            f"{r['half_width']:10.4f} {r['mdd']:9.4f} {cost:>8}"
        )
    return "\n".join(lines).lstrip("\n")


def plan_figure(rows: list[dict]):
    """Resolvable difference against CPU hours, one panel per metric, a line per start and
    samples per problem (the planned designs), the measured design as a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sel = [r for r in rows if r["metric"] == metric and r["design"] == "planned"]
        for label in dict.fromkeys((r["init"], r["problems"], r["samples"]) for r in sel):
            pts = sorted(
                (r["cpu_min"] / 60, r["mdd"], r["seeds"])
                for r in sel
                if (r["init"], r["problems"], r["samples"]) == label
            )
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=1)
            ax.annotate(
                f"{label[0]} P={label[1]} n={label[2]}",
                (pts[-1][0], pts[-1][1]),
                fontsize=6,
                xytext=(3, 0),
                textcoords="offset points",
            )
        ax.set_xlabel("CPU hours")
        ax.set_ylabel("resolvable difference (80% power)")
        ax.set_title(metric, fontsize=9)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def run_plan(path, out=None, **kw) -> list[dict]:
    """Read RESULTS.json, print the table; with `out`, write plan.csv and plan.png there."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such results file (a giftlab pipeline's results.json)")
    data = load_results(path)
    if not isinstance(data, dict) or "results" not in data or "config" not in data:
        raise InputError(f"{path}: not a giftlab pipeline results.json (no results and config)")
    rows = plan(data, **kw)
    print(plan_table(rows))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "plan.csv", rows)
        plan_figure(rows).savefig(out / "plan.png", dpi=130)
        print(f"wrote {out / 'plan.csv'} and {out / 'plan.png'}")
    return rows
