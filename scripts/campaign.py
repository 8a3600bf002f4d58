"""The real-model campaign: training seeds appended, one at a time, to the committed results.

Stage `fewshot`: the few-shot SFT-stage sweep (configs/real_sft_sweep_fewshot.yaml: starts
kd_base, gift:5, gift:10, sft). Stage `rl`: the RL-stage pipeline on few-shot prompts
(configs/pipeline_fewshot.yaml: sft and gift:10, the sweep's best GIFT start on pass@1; 16 GRPO
steps). Each runs in
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# each stage: its settings file (configs/) and the folder its results are committed in
STAGES = {
    "fewshot": ("configs/real_sft_sweep_fewshot.yaml", "paper_figures/real_sft_sweep_fewshot"),
    "rl": ("configs/pipeline_fewshot.yaml", "paper_figures/pipeline_fewshot"),
}
KEEP = ("results.json", "report.md", "pipeline.png")


def main() -> int:
    from giftlab.cli import main as giftlab

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=sorted(STAGES))
    p.add_argument("--seeds", type=int, default=5, help="training seeds to reach (0 .. N-1)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "campaign")
    args = p.parse_args()
    config, committed = (ROOT / part for part in STAGES[args.stage])
    work = args.work / args.stage
    if not work.exists() and (committed / "results.json").exists():
        work.mkdir(parents=True)
        shutil.copy2(committed / "results.json", work / "results.json")
    for n in range(1, args.seeds + 1):
        t0 = time.perf_counter()
        argv = [
            "pipeline",
            "--config",
            str(config),
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
