"""The TRL examples run end to end on a tiny model: GIFT SFT, then GRPO from its checkpoint."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")  # the TRL examples; the variant example needs none
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


@pytest.mark.slow
def test_validate_then_train_a_variant_written_once(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "examples/validate_then_train_variant.py",
            "--tiny",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "exact check: departs, worst KL" in out.stdout  # a mixture is not the Gibbs policy
    assert "trained: {'loss/train'" in out.stdout
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
    lines = (ROOT / "examples" / "validate_then_train_variant.py").read_text().splitlines()
    assert len(lines) <= 70  # one short file
