"""A short GIFT fine-tune of the real SmolLM2-135M-Instruct on CPU (slow: converts the GGUF once)."""

import json

import pytest

from giftlab.data.tasks import write_task_data
from giftlab.train import train
from tests.helpers import train_config


@pytest.mark.slow
def test_short_gift_finetune_of_smollm2_on_countdown(tmp_path):
    paths = write_task_data("countdown", tmp_path / "data", n_train=16, n_val=4, seed=0)
    cfg = train_config(
        tmp_path,
        paths["train"],
        paths["val"],
        model="smollm2",
        max_steps=3,
        batch_size=2,
        lr=1e-5,
        eval_every=3,
        save_every=3,
        diag_every=3,
        max_length=160,
        beta=20.0,
    )
    last = train(cfg)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    # the base model's entropy and gate are what the reference gives: sane ranges for a real LM
    assert 0 < last["val/ref_entropy"] < 10 and 0 <= last["val/gate_w"] <= 1
    assert 0 < last["val/ce"] < 10 and last["diag/topk_overlap"] > 0.5
    assert (tmp_path / "run" / "ckpt-000003" / "trainer_state.pt").exists()
    assert (tmp_path / "run" / "ckpt-000003" / "model.safetensors").exists()
