"""The real-model campaign: training seeds appended, one at a time, to the committed results.

Stage `fewshot`: the few-shot SFT-stage sweep (scripts/real_sft_sweep.py, prompt_style=fewshot,
starts kd_base, gift:5, gift:10, sft). Stage `rl`: the RL-stage pipeline on few-shot prompts
(sft and gift:10, the sweep's best GIFT start on pass@1; 16 GRPO steps). Each runs in
runs/campaign/<stage> (seeded from the committed results, so finished cells are kept) with
`giftlab pipeline --resume`, one more training seed per call; after each seed its results.json,
report.md and pipeline.png are copied into paper_figures/ (checkpoints never are).

    python scripts/campaign.py fewshot --seeds 5        # up to 5 training seeds
    python scripts/campaign.py rl --seeds 5
    nohup nice -n 19 python scripts/campaign.py fewshot --seeds 5 > runs/campaign.log 2>&1 &

Stopped at any point, the same command resumes (the pipeline keeps every finished cell).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from real_sft_sweep import SWEEP  # noqa: E402

STAGES = {
    "fewshot": {
        "committed": "paper_figures/real_sft_sweep_fewshot",
        "args": [a for a in SWEEP if not a.startswith(("out_dir=", "inits=", "seeds="))]
        + ["prompt_style=fewshot", "inits=kd_base,gift:5,gift:10,sft"],
    },
    "rl": {
        "committed": "paper_figures/pipeline_fewshot",
        "args": [
            "prompt_style=fewshot",
            "inits=sft,gift:10",
            "n_train=256",
            "n_val=300",
            "sft_steps=20",
            "sft_batch=4",
            "sft_lr=1e-5",
            "select=best",
            "select_every=10",
            "select_examples=64",
            "rl_steps=16",
            "rl_prompts=8",
            "group_size=8",
            "rl_lr=1e-5",
            "eval_samples=8",
            "eval_temperature=0.6",
            "eval_stats_samples=1",
            "max_new_tokens=16",
            "max_length=256",
        ],
    },
}
KEEP = ("results.json", "report.md", "pipeline.png")


def main() -> int:
    from giftlab.cli import main as giftlab

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=sorted(STAGES))
    p.add_argument("--seeds", type=int, default=5, help="training seeds to reach (0 .. N-1)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "campaign")
    args = p.parse_args()
    stage = STAGES[args.stage]
    committed, work = ROOT / stage["committed"], args.work / args.stage
    if not work.exists() and (committed / "results.json").exists():
        work.mkdir(parents=True)
        shutil.copy2(committed / "results.json", work / "results.json")
    for n in range(1, args.seeds + 1):
        t0 = time.perf_counter()
        argv = [
            "pipeline",
            *stage["args"],
            f"out_dir={work}",
            f"seeds={','.join(map(str, range(n)))}",
        ]
        if (work / "results.json").exists():
            argv.append("--resume")
        code = giftlab(argv)
        if code != 0:
            return code
        committed.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            if (work / name).exists():
                shutil.copy2(work / name, committed / name)
        print(
            f"[campaign {args.stage}] seeds 0..{n - 1} done in {(time.perf_counter() - t0) / 60:.1f} min; copied to {committed}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
