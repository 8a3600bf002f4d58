"""The TRL examples run end to end on a tiny model: GIFT SFT, then GRPO from its checkpoint."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gift_sft_then_grpo_from_its_checkpoint(tmp_path):
    def run(*args):
        out = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout

    sft = tmp_path / "sft"
    assert "wrote" in run(
        "examples/trl_gift_sft.py", "--tiny", "--out", str(sft), "--max-steps", "3"
    )
    assert (sft / "final" / "model.safetensors").exists()
    grpo = run(
        "examples/trl_grpo_from_gift.py",
        "--model",
        str(sft / "final"),
        "--data",
        str(sft / "tiny" / "data" / "train.jsonl"),
        "--out",
        str(tmp_path / "grpo"),
        "--max-steps",
        "2",
    )
    assert "GRPO steps 2" in grpo
    assert (tmp_path / "grpo" / "final" / "model.safetensors").exists()
