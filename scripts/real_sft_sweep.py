"""The SFT-stage beta sweep on a real model, before any RL: SmolLM2-135M-Instruct (Q4_1,
dequantised) fine-tuned on countdown with KD to the base (beta = 0), GIFT at beta in {2, 5, 10, 20}
and SFT (beta = inf), each checkpoint chosen by held-out one-hot cross-entropy (the paper's rule),
then measured on held-out problems:

  sampled at temperature 0.6: pass@k for k = 1..n, distinct correct answers per problem
  teacher-forced on the held-out demonstrations: KL(policy || base), top-K overlap with the base,
  policy entropy (per problem, averaged over its response tokens)

Each start is compared with SFT on the same problems: paired differences with clustered-bootstrap
95% intervals over problems, and the smallest pass@1 difference the design resolves.

    python scripts/real_sft_sweep.py --probe                  # the base's pass@k only (difficulty)
    python scripts/real_sft_sweep.py [--n-val 300 --samples 8 --steps 20]
    python scripts/real_sft_sweep.py --prompt-style fewshot --out paper_figures/real_sft_sweep_fewshot

Writes OUT/results.json (every per-problem count), OUT/summary.csv, OUT/real_sft_sweep.png
(default OUT: paper_figures/real_sft_sweep). Needs giftlab[train,data] and the bundled model.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

STARTS = {
    "KD to base (beta 0)": ("kd_base", None),
    "GIFT beta 2": ("gift", 2.0),
    "GIFT beta 5": ("gift", 5.0),
    "GIFT beta 10": ("gift", 10.0),
    "GIFT beta 20": ("gift", 20.0),
    "SFT (beta inf)": ("sft", None),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--n-val", type=int, default=300)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument(
        "--max-length",
        type=int,
        default=256,
        help="training sequence limit (few-shot: ~160 tokens)",
    )
    p.add_argument("--probe", action="store_true", help="evaluate the base model only")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=[k for k in STARTS if not k.startswith("SFT")],
        metavar="START",
        help=f"starts left out (SFT, the reference, always runs): {', '.join(STARTS)}",
    )
    p.add_argument(
        "--prompt-style",
        default="short",
        choices=["short", "fewshot"],
        help="fewshot: two solved examples before each problem (the base then solves some)",
    )
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="countdown settings")
    p.add_argument("--out", type=Path, default=Path("paper_figures/real_sft_sweep"))
    args = p.parse_args()
    starts = {k: v for k, v in STARTS.items() if k not in args.skip}

    import numpy as np

    from giftlab.data import read_records
    from giftlab.data.tasks import write_task_data
    from giftlab.diagnostics import pass_at_k
    from giftlab.models import load_model, load_tokenizer
    from giftlab.provenance import provenance, write_csv
    from giftlab.rl.evaluate import evaluate
    from giftlab.rl.loop import load_task_records
    from giftlab.stats import clustered_mean_ci, minimum_detectable_difference
    from giftlab.train import TrainConfig, drift_per_problem, train

    t_start = time.perf_counter()
    settings = {k: json.loads(v) for k, v in (x.split("=", 1) for x in args.set)}
    work = Path(tempfile.mkdtemp(prefix="real_sft_sweep"))
    paths = write_task_data(
        "countdown",
        work / "data",
        args.n_train,
        args.n_val,
        seed=0,
        config=settings,
        prompt_style=args.prompt_style,
    )
    val = load_task_records(paths["val"])
    val_demos = read_records(paths["val"])
    tok = load_tokenizer("smollm2")
    base = load_model("smollm2").eval()

    def sample_eval(model):
        tok.padding_side = "left"
        m = evaluate(
            model,
            base,
            tok,
            val,
            n_samples=args.samples,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=0,
            stats_samples=0,
        )
        tok.padding_side = "right"
        return m

    results = {"base": sample_eval(base) | {"minutes": (time.perf_counter() - t_start) / 60}}
    print(
        f"base: pass@1 {results['base']['pass_at_k'][1]:.3f}, pass@{args.samples} "
        f"{results['base']['pass_at_k'][args.samples]:.3f}",
        flush=True,
    )
    if not args.probe:
        for name, (objective, beta) in starts.items():
            t0 = time.perf_counter()
            run = work / "runs" / name.split(" (")[0].replace(" ", "_")
            extra = {"beta": beta} if beta is not None else {}
            cfg = TrainConfig(
                model="smollm2",
                train_file=str(paths["train"]),
                val_file=str(paths["val"]),
                max_val_examples=64,
                out_dir=str(run),
                objective=objective,
                max_steps=args.steps,
                batch_size=4,
                lr=1e-5,
                eval_every=10,
                save_every=0,
                keep_checkpoints=1,
                diag_every=0,
                max_length=args.max_length,
                progress=False,
                **extra,
            )
            train(cfg)
            chosen = run / "best" if (run / "best").exists() else run / "final"
            model = load_model(str(chosen)).eval()
            m = sample_eval(model)
            m["drift_per_problem"] = drift_per_problem(model, base, tok, val_demos)
            m["checkpoint"] = chosen.name
            m["minutes"] = (time.perf_counter() - t0) / 60
            results[name] = m
            shutil.rmtree(run)  # checkpoints are 1.7 GB each; the numbers are what is kept
            print(
                f"{name}: pass@1 {m['pass_at_k'][1]:.3f}, pass@{args.samples} "
                f"{m['pass_at_k'][args.samples]:.3f} ({m['minutes']:.1f} min, {chosen.name})",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    minutes = (time.perf_counter() - t_start) / 60
    config = vars(args) | {"out": str(args.out), "settings": settings}
    (args.out / "results.json").write_text(
        json.dumps(
            {"config": config, "provenance": provenance(), "minutes": minutes, "results": results},
            indent=1,
            default=str,
        )
    )
    if args.probe:
        return
    # paired against SFT on the same problems, clustered over problems
    n, sft = args.samples, results["SFT (beta inf)"]
    c_sft = np.array(sft["per_problem_correct"])
    rows = []
    for name in starts:
        if name.startswith("SFT"):
            continue
        r = results[name]
        c = np.array(r["per_problem_correct"])
        metrics = {
            f"pass@{k}": pass_at_k(n, c, k) - pass_at_k(n, c_sft, k) for k in (1, 2, 4, 8) if k <= n
        }
        metrics["distinct correct"] = np.array(r["per_problem_distinct_correct"]) - np.array(
            sft["per_problem_distinct_correct"]
        )
        for key in ("kl_policy_ref", "topk_overlap", "policy_entropy"):
            metrics[key] = np.array(r["drift_per_problem"][key]) - np.array(
                sft["drift_per_problem"][key]
            )
        for metric, d in metrics.items():
            ci = clustered_mean_ci(d)
            rows.append(
                {
                    "start": name,
                    "metric": metric,
                    "diff_mean": ci["mean"],
                    "low": ci["low"],
                    "high": ci["high"],
                    "n_problems": ci["n"],
                }
            )
    base_rate = float(np.mean(c_sft) / n)
    mdd = (
        minimum_detectable_difference(min(max(base_rate, 0.01), 0.99), args.n_val, n)
        if base_rate > 0
        else math.nan
    )
    for r in rows:
        r["mdd_pass1"] = mdd
    write_csv(args.out / "summary.csv", rows)
    from giftlab.plots import caption, lines, panels

    fig, (a, b) = panels(2, width=5.6)
    ks = np.arange(1, n + 1)
    curves = {name: [results[name]["pass_at_k"][int(k)] for k in ks] for name in ["base", *starts]}
    lines(
        a,
        ks,
        curves,
        "k (samples)",
        "held-out pass@k",
        f"{args.n_val} problems, T = {args.temperature}",
    )
    names = [x for x in starts if not x.startswith("SFT")]
    for metric, marker in (("pass@1", "o"), (f"pass@{n}", "s")):
        sel = [next(r for r in rows if r["start"] == s and r["metric"] == metric) for s in names]
        y = np.array([r["diff_mean"] for r in sel])
        err = np.array(
            [[r["diff_mean"] - r["low"] for r in sel], [r["high"] - r["diff_mean"] for r in sel]]
        )
        b.errorbar(np.arange(len(names)), y, yerr=err, fmt=marker, capsize=3, label=metric)
    b.axhline(0, color="k", lw=0.8)
    b.set_xticks(np.arange(len(names)), [x.replace("GIFT ", "") for x in names], fontsize=7)
    b.set_ylabel("minus SFT (95% clustered CI over problems)")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    caption(
        fig,
        f"SFT-stage beta sweep before RL: SmolLM2-135M-Instruct (Q4_1, dequantised), countdown ({args.prompt_style} prompts), {minutes:.0f} min",
    )
    fig.savefig(args.out / "real_sft_sweep.png", dpi=120)
    print(f"wrote {args.out} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
