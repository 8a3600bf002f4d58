"""torchrun with 2 gloo processes on CPU reproduces one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import save_tiny_model, write_jsonl


def _run(args, env_extra, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_extra)
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, cached", [("ddp", False), ("fsdp", False), ("ddp", True), ("fsdp", True)]
)
def test_two_process_run_matches_one_process(tmp_path, mode, cached):
    """cached: both runs read the reference from a cache (giftlab ref-cache, K >= V): each
    process reads its own examples' rows."""
    save_tiny_model(tmp_path / "model")
    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(6) for b in range(4)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    cache = []
    if cached:
        cache = [f"ref_cache={tmp_path / 'cache'}"]
        build = [
            f"model={tmp_path / 'model'}",
            f"train_file={tmp_path / 'train.jsonl'}",
            "val_file=",
            "max_length=64",
            "top_k=100000",
            "dtype=float32",
            f"out_dir={tmp_path / 'cache'}",
            "progress=false",
        ]
        _run([sys.executable, "-m", "giftlab.cli", "ref-cache", *build], {}, tmp_path)
    common = [
        *cache,
        f"model={tmp_path / 'model'}",
        f"train_file={tmp_path / 'train.jsonl'}",
        "val_file=",
        "max_steps=3",
        "lr=0.01",
        "objective=gift",
        "beta=5",
        "progress=false",
        "diag_every=0",
        "max_length=64",
        "save_every=0",
    ]
    cli = [sys.executable, "-m", "giftlab.cli", "train"]
    _run(
        cli + common + [f"out_dir={tmp_path / 'one'}", "batch_size=2", "grad_accum=2"], {}, tmp_path
    )
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "giftlab.cli",
        "train",
    ]
    _run(
        torchrun + common + [f"out_dir={tmp_path / 'two'}", "batch_size=2", "grad_accum=1"],
        {"GIFTLAB_DISTRIBUTED": mode},
        tmp_path,
    )
    losses = {}
    for run in ("one", "two"):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        losses[run] = [json.loads(x)["loss/train"] for x in lines]
        assert json.loads((tmp_path / run / "config.json").read_text())["world_size"] == (
            1 if run == "one" else 2
        )
    # same global batch and token-mean normalisation; only the all-reduce's summation order differs
    torch.testing.assert_close(losses["two"], losses["one"], rtol=1e-5, atol=1e-6)
    a = load_file(tmp_path / "one" / "final" / "model.safetensors")
    b = load_file(tmp_path / "two" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    # Adam divides by sqrt(v): a near-zero gradient's round-off becomes an update of up to ~lr,
    # so weights are compared at 1% of lr = 1e-4 (a wrong all-reduce scale moves them by ~lr)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_process_resume_matches_the_uninterrupted_run(tmp_path, mode):
    """Checkpoints written and read by 2 processes (FSDP: gathered weights, sharded optimiser)."""
    save_tiny_model(tmp_path / "model")
    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(6) for b in range(4)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    common = [
        f"model={tmp_path / 'model'}",
        f"train_file={tmp_path / 'train.jsonl'}",
        "val_file=",
        "lr=0.01",
        "objective=gift",
        "beta=5",
        "progress=false",
        "diag_every=0",
        "max_length=64",
        "save_every=1",
        "batch_size=2",
    ]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "giftlab.cli",
        "train",
    ]
    env = {"GIFTLAB_DISTRIBUTED": mode}
    _run(torchrun + common + [f"out_dir={tmp_path / 'full'}", "max_steps=3"], env, tmp_path)
    _run(torchrun + common + [f"out_dir={tmp_path / 'cut'}", "max_steps=2"], env, tmp_path)
    _run(
        torchrun + common + [f"out_dir={tmp_path / 'cut'}", "max_steps=3", "--resume"],
        env,
        tmp_path,
    )

    def losses(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss/train"] for x in lines]

    assert losses("cut") == losses("full")
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "final" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)
