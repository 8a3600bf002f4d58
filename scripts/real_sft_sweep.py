"""The SFT-stage beta sweep on a real model, before any RL: `giftlab pipeline rl_steps=0` with
the sweep's starts and settings (this runner only spells them out; the pipeline does the work and
writes OUT/results.json, report.md and pipeline.png in its one schema). The settings are
configs/real_sft_sweep.yaml; the same run is `giftlab pipeline --config configs/real_sft_sweep.yaml`.

SmolLM2-135M-Instruct fine-tuned on countdown with KD to the base (beta = 0), GIFT at beta 2, 5,
10, 20 and SFT, each checkpoint chosen by held-out one-hot cross-entropy (the paper's rule), then
300 held-out problems x 8 samples at temperature 0.6 and the teacher-forced drift on their
demonstrations; each start minus SFT on the same problems with clustered 95% intervals.

    python scripts/real_sft_sweep.py                                   # short prompts
    giftlab pipeline --config configs/real_sft_sweep_fewshot.yaml       # few-shot prompts
    python scripts/real_sft_sweep.py seeds=0,1,2,3,4 --resume          # more training seeds

Any `giftlab pipeline` KEY=VALUE (and --resume) passes through and overrides the file's values.
"""

import sys
from pathlib import Path

from giftlab.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "real_sft_sweep.yaml"

if __name__ == "__main__":
    sys.exit(main(["pipeline", "--config", str(CONFIG), *sys.argv[1:]]))
