"""The one schema of a comparison's results (what `giftlab pipeline` writes to results.json), and
the reader that also loads older files.

    {"config": PipelineConfig keys, "provenance": {...}, "minutes": float,
     "results": [{"init": "gift:5", "seed": 0, "stage": "before RL" | "after RL",
                  "per_problem_correct": [...], "per_problem_distinct_correct": [...],
                  "pass@1": ..., "drift/kl_to_base": [...per problem...], ...}, ...]}

A start is named by its spec, "objective[:value]" ("sft", "kd_base", "gift:5"), everywhere:
results, reports, claims. Older files still load: the SFT-stage sweep's own schema (a mapping
from "GIFT beta 5"-style names to evaluations, written by scripts/real_sft_sweep.py before the
sweep became `giftlab pipeline rl_steps=0`), and metric names from before one name per concept
(docs/names.md): `load_results` converts both.
"""

from __future__ import annotations

import json
from pathlib import Path

from giftlab.errors import InputError
from giftlab.integrity import CHECKSUM, check_sealed

# older metric names -> today's (one name per concept, docs/names.md)
RENAMED = {
    "drift/kl_policy_ref": "drift/kl_to_base",
}
# the sweep script's start names -> start specs
SWEEP_STARTS = {
    "KD to base (beta 0)": "kd_base",
    "GIFT beta 2": "gift:2",
    "GIFT beta 5": "gift:5",
    "GIFT beta 10": "gift:10",
    "GIFT beta 20": "gift:20",
    "SFT (beta inf)": "sft",
}


def flat_row(init: str, seed: int, stage: str, m: dict) -> dict:
    """One results row from an evaluation: pass@k and drift flattened to top-level keys."""
    flat = {k: v for k, v in m.items() if not isinstance(v, dict)}
    flat |= {f"pass@{k}": v for k, v in m["pass_at_k"].items()}
    flat |= {f"drift/{k}": v for k, v in m.get("drift_per_problem", {}).items()}
    return {"init": init, "seed": seed, "stage": stage} | _renamed(flat)


def _renamed(row: dict) -> dict:
    return {RENAMED.get(k, k): v for k, v in row.items()}


def _from_sweep(data: dict) -> dict:
    """The sweep script's results.json in the pipeline's schema (one training seed, seed 0, the
    fine-tuning stage only: the same settings `giftlab pipeline rl_steps=0` runs)."""
    c = data["config"]
    starts = [SWEEP_STARTS[name] for name in data["results"] if name != "base"]
    config = {
        "out_dir": c.get("out", ""),
        "overwrite": False,
        "task": "countdown",
        "prompt_style": c.get("prompt_style", "short"),
        "n_train": c["n_train"],
        "n_val": c["n_val"],
        "inits": starts,
        "seeds": [0],
        "sft_steps": c["steps"],
        "sft_batch": 4,
        "sft_lr": 1e-5,
        "select": "best",
        "select_every": 10,
        "select_examples": 64,
        "rl_steps": 0,  # the fine-tuning stage only; the next three are the defaults, unused
        "rl_prompts": 4,
        "group_size": 8,
        "rl_lr": 5e-6,
        "eval_samples": c["samples"],
        "eval_temperature": c["temperature"],
        "eval_stats_samples": 0,
        "max_new_tokens": c["max_new_tokens"],
        "max_length": c.get("max_length", 128),
        "model": "smollm2",
    }
    rows = []
    for name, m in data["results"].items():
        m = dict(m)
        if "checkpoint" in m:
            m["start_checkpoint"] = m.pop("checkpoint")
        rows.append(flat_row("base" if name == "base" else SWEEP_STARTS[name], 0, "before RL", m))
    return {
        "config": config,
        "provenance": data["provenance"],
        "minutes": data["minutes"],
        "results": rows,
        "converted_from": "the SFT-stage sweep's own schema (scripts/real_sft_sweep.py)",
    }


def load_results(path) -> dict:
    """A results.json in today's schema, whatever giftlab version wrote it; IntegrityError
    naming the file when it was edited after giftlab sealed it (giftlab.integrity); InputError
    naming the file, line and column when it is not JSON."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path}: not a results file: not JSON at line {e.lineno}, column {e.colno} ({e.msg})"
        ) from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a results file: not UTF-8 text (byte {e.start})") from None
    if not isinstance(data, dict) or "results" not in data:
        return data  # not a results file: the caller says so
    check_sealed(path, data, "giftlab reads back only the results it wrote")
    data.pop(CHECKSUM, None)
    if isinstance(data["results"], dict):  # the sweep script's schema
        return _from_sweep(data)
    data["results"] = [_renamed(r) for r in data["results"]]
    return data
