"""The SFT-stage beta sweep on a real model, before any RL: `giftlab pipeline rl_steps=0` with
the sweep's starts and settings (this runner only spells them out; the pipeline does the work and
writes OUT/results.json, report.md and pipeline.png in its one schema).

SmolLM2-135M-Instruct fine-tuned on countdown with KD to the base (beta = 0), GIFT at beta 2, 5,
10, 20 and SFT, each checkpoint chosen by held-out one-hot cross-entropy (the paper's rule), then
300 held-out problems x 8 samples at temperature 0.6 and the teacher-forced drift on their
demonstrations; each start minus SFT on the same problems with clustered 95% intervals.

    python scripts/real_sft_sweep.py                                   # short prompts
    python scripts/real_sft_sweep.py prompt_style=fewshot inits=kd_base,gift:5,gift:10,sft \\
        out_dir=paper_figures/real_sft_sweep_fewshot
    python scripts/real_sft_sweep.py seeds=0,1,2,3,4 --resume          # more training seeds

Any `giftlab pipeline` KEY=VALUE (and --resume) passes through and overrides the defaults below.
"""

import sys

from giftlab.cli import main

SWEEP = [
    "rl_steps=0",
    "inits=kd_base,gift:2,gift:5,gift:10,gift:20,sft",
    "seeds=0",
    "n_train=256",
    "n_val=300",
    "eval_samples=8",
    "eval_temperature=0.6",
    "eval_stats_samples=0",
    "sft_steps=20",
    "sft_batch=4",
    "sft_lr=1e-5",
    "select=best",
    "select_every=10",
    "select_examples=64",
    "max_length=256",
    "out_dir=paper_figures/real_sft_sweep",
]

if __name__ == "__main__":
    sys.exit(main(["pipeline", *SWEEP, *sys.argv[1:]]))
