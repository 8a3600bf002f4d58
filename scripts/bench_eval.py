"""Benchmark one cell of the few-shot SFT-stage sweep (scripts/real_sft_sweep.py with
prompt_style=fewshot): minutes per cell (fine-tune + evaluation) with the plain sampler
(model.generate) and the fast one (giftlab.rl.sampler), side by side in one run, on
SmolLM2-135M-Instruct, and new tokens per second of each evaluation.

Each sampler runs `giftlab pipeline` with the sweep's settings and one start (sft, training
seed 0) into its own temporary folder: the base's evaluation, then the cell (fine-tune with
held-out CE selection, evaluation of 300 problems x 8 samples at temperature 0.6, drift on the
demonstrations). A cell's minutes are the row's cumulative minutes less the base row's.
Then the fast evaluation of the base on --batch-problems problems by prompts per batch.

    python scripts/bench_eval.py [--n-val 300] [--batches 8 16 32] [--batch-problems 64]

Writes paper_figures/benchmarks/bench_eval_<device>.csv (with provenance).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "real_sft_sweep_fewshot.yaml"


def _pipeline_cell(sampler: str, n_val: int, folder: Path) -> dict:
    from giftlab.pipeline import PipelineConfig, run_pipeline
    from giftlab.results import load_results

    cfg = PipelineConfig.from_yaml(CONFIG).with_overrides(
        [
            "inits=sft",
            "seeds=0",
            f"n_val={n_val}",
            f"eval_sampler={sampler}",
            f"out_dir={folder}",
        ]
    )
    t0 = time.perf_counter()
    run_pipeline(cfg, log=lambda *a: None)
    wall = (time.perf_counter() - t0) / 60
    rows = {r["init"]: r for r in load_results(folder / "results.json")["results"]}
    base, sft = rows["base"], rows["sft"]
    return {
        "sampler": sampler,
        "problems": n_val,
        "samples": cfg.eval_samples,
        "base_eval_min": base["minutes"],
        "cell_min": sft["minutes"] - base["minutes"],
        "pipeline_wall_min": wall,
        "base_eval_new_tokens_per_s": base["generation_tokens_per_s"],
        "cell_eval_new_tokens_per_s": sft["generation_tokens_per_s"],
        "base_pass@1": base["pass@1"],
        "sft_pass@1": sft["pass@1"],
    }


def _batch_rows(batches, n_problems) -> list[dict]:
    import torch

    from giftlab.data.tasks import write_task_data
    from giftlab.models import load_model, load_tokenizer
    from giftlab.rl.evaluate import evaluate
    from giftlab.rl.loop import load_task_records

    tok = load_tokenizer("smollm2")
    tok.padding_side = "left"
    model = load_model("smollm2").eval()
    paths = write_task_data("countdown", tempfile.mkdtemp(), 8, n_problems, prompt_style="fewshot")
    recs = load_task_records(paths["val"])
    rows = []
    for b in batches:
        for sampler in ("fast", "plain"):
            t0 = time.perf_counter()
            with torch.no_grad():
                m = evaluate(
                    model,
                    None,
                    tok,
                    recs,
                    n_samples=8,
                    max_new_tokens=16,
                    temperature=0.6,
                    prompts_per_batch=b,
                    stats_samples=0,
                    sampler=sampler,
                )
            dt = time.perf_counter() - t0
            rows.append(
                {
                    "sampler": sampler,
                    "prompts_per_batch": b,
                    "problems": n_problems,
                    "samples": 8,
                    "eval_s": dt,
                    "new_tokens_per_s": m["generation_tokens_per_s"],
                    "pass@1": m["pass_at_k"][1],
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-val", type=int, default=300)
    p.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--batch-problems", type=int, default=64)
    p.add_argument("--skip-cells", action="store_true", help="only the batch-size table")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import torch

    from giftlab.provenance import write_csv

    rows = []
    if not args.skip_cells:
        for sampler in ("plain", "fast"):
            with tempfile.TemporaryDirectory() as d:
                row = _pipeline_cell(sampler, args.n_val, Path(d) / "p")
            row["table"] = "cell"
            rows.append(row)
            print(row, flush=True)
    for row in _batch_rows(args.batches, args.batch_problems):
        row["table"] = "batch"
        rows.append(row)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    out = (
        args.out
        or Path(__file__).resolve().parents[1] / f"paper_figures/benchmarks/bench_eval_{dev}.csv"
    )
    keys = list(dict.fromkeys(k for r in rows for k in r))  # the two tables' columns
    write_csv(out, [{k: r.get(k, "") for k in keys} for r in rows])
    cells = {r["sampler"]: r for r in rows if r["table"] == "cell"}
    if len(cells) == 2:
        print(
            f"cell: plain {cells['plain']['cell_min']:.2f} min, fast {cells['fast']['cell_min']:.2f} "
            f"min ({cells['plain']['cell_min'] / cells['fast']['cell_min']:.2f}x); base evaluation "
            f"plain {cells['plain']['base_eval_min']:.2f} min, fast "
            f"{cells['fast']['base_eval_min']:.2f} min "
            f"({cells['plain']['base_eval_min'] / cells['fast']['base_eval_min']:.2f}x)"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
