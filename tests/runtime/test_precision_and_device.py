"""The GPU configuration, exercised on the CPU: the trainer, GRPO, evaluation and a tiny pipeline
in bf16 (autocast, bf16 weights); the Triton kernel inside a real trainer step (under Triton's
interpreter); and the sharpest device check without a GPU: every run under
torch.set_default_device("meta"), where a tensor made without naming its device is a meta tensor
and its first use beside the model's real tensors fails. Model cards in final/ and best/."""

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from giftlab.models import tiny_llama, tiny_tokenizer
from giftlab.rl.evaluate import evaluate_model
from giftlab.rl.loop import RLConfig, load_task_records, rl
from giftlab.train import train
from tests.helpers import train_config, write_jsonl


@pytest.fixture
def files(tmp_path):
    rows = [
        {"prompt": f"say a {i}", "response": "a" * (1 + i % 3), "task": "toy", "index": i}
        | {"seed": 0, "config": {}}
        for i in range(8)
    ]
    return write_jsonl(tmp_path / "train.jsonl", rows), write_jsonl(
        tmp_path / "val.jsonl", rows[:4]
    )


@contextmanager
def meta_default():
    """Tensors made without naming a device go to the meta device inside the block."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


def _models(seed=0):
    tok = tiny_tokenizer()
    return tiny_llama(len(tok), seed=seed), tok


def _rl_cfg(tmp_path, train_file, **kw):
    base = dict(
        train_file=str(train_file),
        out_dir=str(tmp_path / "rl"),
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=4,
        max_steps=2,
        progress=False,
        save_final=False,
        lr=1e-2,
    )
    return RLConfig(**(base | kw))


def _a_fraction(record, completion):
    return completion.count("a") / max(len(completion), 1)


def test_the_trainer_runs_in_bf16_on_the_cpu_and_writes_model_cards(tmp_path, files):
    model, tok = _models()
    cfg = train_config(
        tmp_path,
        *files,
        objective="gift",
        beta=5.0,
        bf16=True,
        bf16_weights=True,
        save_final=True,
        eval_every=1,
        max_steps=3,
        diag_every=1,
    )
    last = train(cfg, model=model, tokenizer=tok)
    assert torch.isfinite(torch.tensor(last["loss/train"]))
    assert next(model.parameters()).dtype == torch.bfloat16  # bf16 weights
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["val/ce"])) for r in rows if "val/ce" in r)
    for folder in ("final", "best"):
        card = (tmp_path / "run" / folder / "README.md").read_text()
        assert "| objective | gift |" in card and "| beta | 5 |" in card
        # the data file by its name: a local path means nothing on the hub
        assert f"| data | {Path(files[0]).name} |" in card and "| bf16 | True |" in card
        assert str(tmp_path) not in card


def test_grpo_and_evaluation_run_in_bf16_on_the_cpu(tmp_path, files):
    model, tok = _models(seed=1)
    ref, _ = _models(seed=1)
    last = rl(
        _rl_cfg(tmp_path, files[0], bf16=True, save_final=True),
        model=model,
        tokenizer=tok,
        ref_model=ref,
        score_fn=_a_fraction,
    )
    assert torch.isfinite(torch.tensor(last["loss/grpo"]))
    assert next(ref.parameters()).dtype == torch.bfloat16  # the reference kept in bf16
    card = (tmp_path / "rl" / "final" / "README.md").read_text()
    assert "| objective | grpo |" in card
    import giftlab.rl.evaluate as ev

    recs = load_task_records(files[1], check=False)
    ev_score = ev.score
    ev.score = lambda r, c: float(c.startswith("a"))
    try:
        m = evaluate_model(
            model, model, tok, recs, samples=2, max_new_tokens=3, temperature=1.0, bf16=True
        )
    finally:
        ev.score = ev_score
    assert m["n_problems"] == 4 and m["kl_to_base_per_token"] == pytest.approx(0, abs=1e-6)


@pytest.mark.slow
def test_a_tiny_pipeline_runs_in_bf16_on_the_cpu(tmp_path):
    from giftlab.pipeline import run_pipeline
    from tests.helpers import tiny_pipeline_config

    cfg = tiny_pipeline_config(tmp_path, bf16=True, inits=["sft", "gift:5"], seeds=[0])
    run_pipeline(cfg)
    results = json.loads((tmp_path / "p" / "results.json").read_text())
    assert {r["init"] for r in results["results"]} >= {"sft", "gift:5"}
    for folder in (tmp_path / "p").glob("*-seed0"):
        assert json.loads((folder / "sft" / "config.json").read_text())["config"]["bf16"]
        assert json.loads((folder / "rl" / "config.json").read_text())["config"]["bf16"]


@pytest.mark.parametrize("objective", ["sft", "gift"])
def test_the_triton_kernel_inside_a_trainer_step_equals_the_torch_chunk(
    tmp_path, files, objective, monkeypatch
):
    """Under the interpreter on the CPU (the compiled kernel on a GPU): two steps of the trainer
    with kernel=triton land on the weights kernel=torch gives."""
    pytest.importorskip("triton")
    import os

    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and the Triton interpreter is off")
    weights = []
    for kernel in ("torch", "triton"):
        model, tok = _models()
        cfg = train_config(
            tmp_path / kernel, files[0], objective=objective, kernel=kernel, max_steps=2
        )
        train(cfg, model=model, tokenizer=tok)
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    for k in weights[0]:
        torch.testing.assert_close(weights[1][k], weights[0][k], rtol=1e-4, atol=1e-5)


def test_no_tensor_is_made_off_the_models_device_in_training(tmp_path, files):
    model, tok = _models()
    cfg = train_config(tmp_path, *files, objective="gift", eval_every=1, diag_every=1)
    with meta_default():
        last = train(cfg, model=model, tokenizer=tok)
    assert last["loss/train"] == last["loss/train"]


def test_no_tensor_is_made_off_the_models_device_in_grpo_and_evaluation(tmp_path, files):
    import giftlab.rl.evaluate as ev
    from giftlab.data import read_records

    model, tok = _models(seed=1)
    ref, _ = _models(seed=1)
    recs = load_task_records(files[1], check=False)
    demos = read_records(files[1])
    ev_score = ev.score
    ev.score = lambda r, c: float(c.startswith("a"))
    try:
        with meta_default():
            last = rl(
                _rl_cfg(tmp_path, files[0]),
                model=model,
                tokenizer=tok,
                ref_model=ref,
                score_fn=_a_fraction,
            )
            m = evaluate_model(
                model, ref, tok, recs, samples=2, max_new_tokens=3, temperature=1.0, demos=demos
            )
    finally:
        ev.score = ev_score
    assert last["rl/completion_tokens"] > 0
    assert m["n_problems"] == 4


def test_the_meta_default_catches_a_tensor_made_without_its_device():
    """The check itself can fail: the rollout's padding made without device= (as it once was)."""
    model, _ = _models()
    ids = torch.arange(5, device="cpu")[None]
    with meta_default(), pytest.raises((RuntimeError, NotImplementedError)):
        mask = torch.ones(1, 5, dtype=torch.long).to(ids.device)  # no device: meta, no data
        model(input_ids=ids, attention_mask=mask).logits.sum().item()
