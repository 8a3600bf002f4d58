"""The pipeline's report: report.md (tables of each start, and each start minus SFT over
training seeds and problems), pipeline.png, and rebuild_report for a folder's results.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from giftlab.errors import InputError, writing
from giftlab.models.loading import DEFAULT_MODEL, REPORT_NAME
from giftlab.pipeline.config import PipelineConfig
from giftlab.plots import caption, lines, panels
from giftlab.results import load_results
from giftlab.stats import (
    clustered_mean_ci,
    format_paired,
    paired_vs_sft,
    per_problem_values,
    seeds_done,
)


def reward_curve(path: Path) -> list[float]:
    """rl/reward_mean per GRPO step from a run's metrics.jsonl (kept in results.json)."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r["rl/reward_mean"] for r in rows if "rl/reward_mean" in r]


def updated_steps(path: Path) -> int:
    """How many GRPO steps had a gradient (a step whose groups all had equal rewards has none:
    rl/updated 0)."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return sum(int(r.get("rl/updated", 1)) for r in rows if "rl/reward_mean" in r)


def _updates_text(cfg: PipelineConfig, results: list[dict]) -> str:
    """In how many GRPO steps each RL cell had a gradient; a cell with none is named: its 'after
    RL' model is its 'before RL' model (up to weight decay)."""
    rows = [r for r in results if r["stage"] == "after RL" and "rl_updated_steps" in r]
    if not rows:
        return ""
    frozen = [f"{r['init']} seed {r['seed']}" for r in rows if r["rl_updated_steps"] == 0]
    counts = ", ".join(f"{r['init']} seed {r['seed']}: {r['rl_updated_steps']}" for r in rows)
    text = f"GRPO steps with a non-zero gradient (of {cfg.rl_steps}): {counts}."
    if frozen:
        text += (
            f" No update happened for {', '.join(frozen)}: every group's rewards were equal at "
            "every step, so the gradient was 0 throughout and 'after RL' is the fine-tuned model "
            "itself (up to weight decay)."
        )
    return text


def rebuild_report(out_dir) -> Path:
    """report.md and pipeline.png again from out_dir/results.json alone (no training): after a
    change to the report, or from the partial results.json a crashed or stopped run left."""

    path = Path(out_dir) / "results.json"
    if not path.exists():
        raise InputError(f"{path} does not exist: give the out_dir of a pipeline run")
    try:
        data = load_results(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise InputError(f"{path}: not a pipeline results.json (no config mapping)")
    # keys added later whose default is what earlier versions did
    config = {"prompt_style": "short", "overwrite": False, "max_length": 128} | data["config"]
    missing = sorted(set(PipelineConfig().to_dict()) - set(config))
    if missing:  # today's defaults would misdescribe the run (e.g. its sampling temperature)
        raise InputError(
            f"{path} comes from an older giftlab: its config lacks {missing}; its report.md "
            "stays as that version wrote it"
        )
    cfg = PipelineConfig.from_dict(config, source=f"{path} (config)")
    try:
        _report(Path(out_dir), cfg, data["results"], float(data["minutes"]))
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise InputError(
            f"{path}: malformed results ({type(err).__name__}: {err}); it is not what "
            "giftlab pipeline writes"
        ) from None
    return Path(out_dir) / "report.md"


def model_display(model: str) -> str:
    """The model's name in captions: the bundled SmolLM2's full name, else what the user gave."""

    return REPORT_NAME if model == DEFAULT_MODEL else model


def _seeds_text(cfg, results: list[dict]) -> str:
    done = seeds_done(results)
    if done == sorted(cfg.seeds):
        return str(cfg.seeds)
    return f"{done} (the run was stopped: {cfg.seeds} were asked for)"


def _difference_panel(ax, paired: list[dict], keys: list[str]) -> None:
    """Init minus SFT per metric, before (open) and after RL (filled), 95% clustered CIs, and
    each training seed's difference as a small dot."""
    stages = [s for s in ("before RL", "after RL") if any(d["stage"] == s for d in paired)]
    inits = list(dict.fromkeys(d["init"] for d in paired))
    width = 0.8 / max(len(inits) * len(stages), 1)
    for j, (init, stage) in enumerate((i, s) for i in inits for s in stages):
        xs, ys, lo, hi = [], [], [], []
        for x, k in enumerate(keys):
            d = next(
                (d for d in paired if (d["init"], d["stage"], d["metric"]) == (init, stage, k)),
                None,
            )
            if d is None:
                continue
            xs.append(x - 0.4 + width * (j + 0.5))
            ys.append(d["mean"])
            defined = d["low"] == d["low"]  # NaN with one training seed: the point alone
            lo.append(d["mean"] - d["low"] if defined else 0.0)
            hi.append(d["high"] - d["mean"] if defined else 0.0)
            ax.plot(
                [xs[-1]] * len(d["per_seed"]), list(d["per_seed"].values()), ".", color="0.5", ms=3
            )
        ax.errorbar(
            xs,
            ys,
            yerr=[lo, hi],
            fmt="o",
            mfc="none" if stage == "before RL" else None,
            capsize=3,
            label=f"{init}, {stage}",
        )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(
        range(len(keys)), [k.replace("drift/kl_to_base", "KL to base") for k in keys], fontsize=7
    )
    ax.set_ylabel("minus SFT (95% CI over seeds and problems; dots: seeds)")
    ax.set_title("paired against SFT", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _paired_table(results: list[dict], cfg) -> list[str]:
    """The markdown table of `paired_vs_sft`: one row per init and stage."""
    keys = ["pass@1", f"pass@{cfg.eval_samples}", "distinct_correct", "drift/kl_to_base"]
    rows = paired_vs_sft(results, cfg.eval_samples, keys)
    out = [
        "| init - sft | stage | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]

    cell = format_paired
    for init, stage in dict.fromkeys((r["init"], r["stage"]) for r in rows):
        got = {r["metric"]: r for r in rows if r["init"] == init and r["stage"] == stage}
        cells = [cell(got[k]) if k in got else "-" for k in keys]
        out.append(f"| {init} | {stage} | " + " | ".join(cells) + " |")
    return out if len(out) > 2 else []


def _summary_table(results: list[dict], cfg, keys: list[str]) -> list[str]:
    """One markdown row per init and stage: per-problem metrics with a clustered 95% CI over
    problems, sample-level ones as the mean over seeds."""

    groups: dict = {}
    for r in results:
        groups.setdefault((r["init"], r["stage"]), []).append(r)
    table = [
        "| init | stage | seeds | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for (init, stage), rs in groups.items():
        cells = []
        for k in keys:
            per_problem = per_problem_values(rs, k, cfg.eval_samples)
            if per_problem is not None:  # problems are the unit: clustered CI over problems
                ci = clustered_mean_ci(per_problem) if len(per_problem) > 1 else None
                cells.append(
                    f"{ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
                    if ci
                    else f"{per_problem.mean():.3f}"
                )
            elif all(k in r for r in rs):  # sample-level averages: the mean over seeds
                cells.append(f"{np.mean([r[k] for r in rs]):.3f}")
            else:  # not measured (the base's drift from itself)
                cells.append("-")
        table.append(f"| {init} | {stage} | {len(rs)} | " + " | ".join(cells) + " |")
    return table


def _figure(out: Path, cfg, results: list[dict]) -> None:
    """pipeline.png: pass@k before / after RL, the RL reward curves, the paired differences."""

    groups: dict = {}
    for r in results:
        groups.setdefault((r["init"], r["stage"]), []).append(r)
    # figures: pass@k before/after; RL reward curves
    ks = np.arange(1, cfg.eval_samples + 1)
    diff_keys = ["pass@1", f"pass@{cfg.eval_samples}", "distinct_correct", "drift/kl_to_base"]
    paired = paired_vs_sft(results, cfg.eval_samples, diff_keys)
    reward_curves = {}
    for r in results:
        if r["stage"] == "after RL":
            name = f"{r['init'].replace(':', '-')}-seed{r['seed']}"
            mpath = out / name / "rl" / "metrics.jsonl"
            if r.get("rl_reward_mean"):
                reward_curves[name] = r["rl_reward_mean"]
            elif mpath.exists():  # results.json from before the curve was kept in it
                reward_curves[name] = reward_curve(mpath)
    fig, axes = panels(1 + bool(reward_curves) + bool(paired), width=5.0)
    a, b = axes[0], axes[1] if reward_curves else None
    curves = {
        f"{i}, {s}": np.mean([[r[f"pass@{k}"] for k in ks] for r in rs], axis=0)
        for (i, s), rs in groups.items()
    }
    styles = {lab: {"ls": "--" if "before" in lab else "-"} for lab in curves}
    lines(
        a,
        ks,
        curves,
        "k (samples)",
        "pass@k (held-out)",
        "dashed: before RL, solid: after",
        styles=styles,
    )
    if reward_curves:
        n = min(len(v) for v in reward_curves.values())
        lines(
            b,
            np.arange(1, n + 1),
            {k: v[:n] for k, v in reward_curves.items()},
            "GRPO step",
            "mean reward of the group samples",
            "RL reward per initialisation",
        )
    if paired:  # no RL (rl_steps=0): no reward panel
        _difference_panel(axes[-1], paired, diff_keys)
    seeds = seeds_done(results)
    caption(fig, f"{cfg.task}: {model_display(cfg.model)}, {len(seeds)} seeds")
    with writing(out / "pipeline.png"):
        fig.savefig(out / "pipeline.png", dpi=120)


def _report(out: Path, cfg: PipelineConfig, results: list[dict], minutes: float) -> None:
    """report.md (the table, the paired differences) and pipeline.png."""

    keys = [
        "pass@1",
        f"pass@{cfg.eval_samples}",
        "distinct_correct",
        "drift/kl_to_base",
        "drift/topk_overlap",
        "sample_entropy",
        "kl_to_base_per_token",
    ]
    table = _summary_table(results, cfg, keys)
    diffs = _paired_table(results, cfg)
    _figure(out, cfg, results)
    text = [
        f"# giftlab pipeline report ({minutes:.1f} min)",
        "",
        f"Task {cfg.task} ({cfg.prompt_style} prompts), {cfg.n_train} training problems, {cfg.n_val} held-out problems x "
        f"{cfg.eval_samples} samples; fine-tuning {cfg.sft_steps} steps, GRPO {cfg.rl_steps} steps x "
        f"{cfg.rl_prompts} prompts x group {cfg.group_size}; seeds {_seeds_text(cfg, results)}; evaluation at temperature {cfg.eval_temperature}.",
        "",
        *table,
        "",
        "pass@k and distinct correct: mean over problems (each averaged over seeds) with a 95% "
        "clustered-bootstrap CI over problems; drift/kl_to_base and drift/topk_overlap: "
        "teacher-forced on each held-out demonstration (KL(policy || base) per token, top-10 "
        "overlap), same CI; sample_entropy and kl_to_base_per_token (per sampled token, on the first "
        f"{cfg.eval_stats_samples} sample(s) of each problem): mean over seeds. The fine-tuned "
        f"model passed to RL: {cfg.select}"
        + (
            f" (lowest one-hot CE on the first {cfg.select_examples} held-out problems)."
            if cfg.select == "best"
            else "."
        ),
        "",
        *diffs,
        "",
        "Init minus SFT on the same problems and training seeds: 95% CI over training seeds and "
        "problems together (giftlab.stats.seed_problem_difference: a seed and a problem each "
        "shift the difference; none with one training seed), 'resolvable': the smallest "
        "difference this design detects (alpha 0.05, power 0.8), then each seed's own "
        "difference."
        if diffs
        else "",
        "",
        _updates_text(cfg, results),
        "",
        "![pipeline](pipeline.png)",
        "",
    ]
    with writing(out / "report.md", "results.json holds every result (giftlab pipeline --report)"):
        (out / "report.md").write_text("\n".join(text))
