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

`gpu` runs both stages, every seed of a stage in one pipeline call (a GPU has no reason to
commit seed by seed), from scratch in runs/campaign-gpu, copies the results into
paper_figures/gpu/<folder> (beside the CPU ones, never over them) and prints the minutes of each
stage and the total (`make gpu-campaign`). KEY=VALUE after the options go to every stage's
settings (the tests run it on a tiny model).

    python scripts/campaign.py gpu --seeds 5
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


def run_stage(stage: str, seeds: int, work: Path, out: Path, overrides, at_once=False) -> int:
    """Training seeds 0 .. seeds-1 of `stage` in `work` (resumed), its results copied to `out`
    after each call: one seed per call, or all at once."""
    from giftlab.cli import main as giftlab

    config, committed = (ROOT / part for part in STAGES[stage])
    if not work.exists() and (committed / "results.json").exists() and out == committed:
        work.mkdir(parents=True)
        shutil.copy2(committed / "results.json", work / "results.json")
    for n in [seeds] if at_once else range(1, seeds + 1):
        t0 = time.perf_counter()
        argv = [
            "pipeline",
            "--config",
            str(config),
            f"out_dir={work}",
            f"seeds={','.join(map(str, range(n)))}",
            *overrides,
        ]
        if (work / "results.json").exists():
            argv.append("--resume")
        code = giftlab(argv)
        if code != 0:
            return code
        out.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            if (work / name).exists():
                shutil.copy2(work / name, out / name)
        print(
            f"[campaign {stage}] seeds 0..{n - 1} done in {(time.perf_counter() - t0) / 60:.1f} "
            f"min; copied to {out}",
            flush=True,
        )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=[*sorted(STAGES), "gpu"])
    p.add_argument("--seeds", type=int, default=5, help="training seeds to reach (0 .. N-1)")
    p.add_argument("--work", type=Path, default=None, help="the working folder of the runs")
    p.add_argument("--out", type=Path, default=None, help="where results are copied")
    args, overrides = p.parse_known_args(argv)  # KEY=VALUE: settings of every stage
    bad = [x for x in overrides if "=" not in x or x.startswith("-")]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)} (settings are KEY=VALUE)")
    if args.seeds < 1:
        p.error(f"--seeds {args.seeds}: the training seeds to reach, >= 1")
    args.overrides = overrides
    if args.stage != "gpu":
        work = (args.work or ROOT / "runs" / "campaign") / args.stage
        out = args.out or ROOT / STAGES[args.stage][1]
        return run_stage(args.stage, args.seeds, work, out, args.overrides)
    work = args.work or ROOT / "runs" / "campaign-gpu"
    out = args.out or ROOT / "paper_figures" / "gpu"
    minutes = {}
    for stage in ("fewshot", "rl"):
        t0 = time.perf_counter()
        folder = Path(STAGES[stage][1]).name
        code = run_stage(stage, args.seeds, work / stage, out / folder, args.overrides, True)
        if code != 0:
            return code
        minutes[stage] = (time.perf_counter() - t0) / 60
    for stage, m in minutes.items():
        print(f"[campaign gpu] {stage}: {m:.1f} min")
    print(f"[campaign gpu] total: {sum(minutes.values()):.1f} min for {args.seeds} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
