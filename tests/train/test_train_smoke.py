"""A few steps of every objective on a tiny random Llama: parameters move, metrics are finite."""

import json
import math

import pytest
import torch

from giftlab.losses import OBJECTIVES
from giftlab.train import TrainConfig, train
from tests.helpers import train_config


def _cfg(tmp_path, train_file, val_file, **kw):
    smoke = {"max_steps": 3, "eval_every": 2, "save_every": 2, "diag_every": 1}
    return train_config(tmp_path, train_file, val_file, **(smoke | kw))


CASES = [(name, True) for name in sorted(OBJECTIVES)] + [
    (name, False) for name in ("sft", "gift", "gift_seq")
]


@pytest.mark.parametrize("objective, chunked", CASES)
def test_every_objective_moves_parameters_with_finite_metrics(
    tmp_path, data_files, model_factory, tok, objective, chunked
):
    model = model_factory()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = _cfg(tmp_path, *data_files, objective=objective, chunked=chunked)
    last = train(cfg, model=model, tokenizer=tok)
    moved = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert moved > 0
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # step 0: the initial model on validation
    for r in rows:
        for k, v in r.items():
            assert isinstance(v, (int, float)) and math.isfinite(v), (k, v)
    assert "val/ce" in last and "diag/gate_w_q50" in last and "diag/topk_overlap" in last


def test_gift_at_infinite_beta_follows_the_sft_trajectory(tmp_path, data_files, model_factory, tok):
    runs = {}
    for name, kw in {
        "sft": dict(objective="sft"),
        "gift": dict(objective="gift", beta=math.inf),
    }.items():
        model = model_factory()
        train(_cfg(tmp_path / name, *data_files, max_steps=4, **kw), model=model, tokenizer=tok)
        runs[name] = model.state_dict()
        rows = [
            json.loads(line)
            for line in (tmp_path / name / "run" / "metrics.jsonl").read_text().splitlines()
        ]
        losses = [r["loss/train"] for r in rows if "loss/train" in r]
        runs[name + "_loss"] = losses
    torch.testing.assert_close(runs["gift_loss"], runs["sft_loss"])
    for k in runs["sft"]:
        torch.testing.assert_close(runs["gift"][k], runs["sft"][k])


def test_resume_reproduces_an_uninterrupted_run(tmp_path, data_files, model_factory, tok):
    full = model_factory()
    train(
        _cfg(tmp_path / "a", *data_files, max_steps=6, save_every=3, eval_every=3),
        model=full,
        tokenizer=tok,
    )
    ref = (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()
    # run 1..4 then "crash" (the step-4 line is logged after the step-3 checkpoint), resume to 6
    part = model_factory()
    train(
        _cfg(tmp_path / "b", *data_files, max_steps=4, save_every=3, eval_every=3),
        model=part,
        tokenizer=tok,
    )
    # the step-4 checkpoint is lost, `latest` still names it: resume falls back to step 3
    import shutil

    shutil.rmtree(tmp_path / "b" / "run" / "ckpt-000004")
    assert (tmp_path / "b" / "run" / "latest").read_text().strip() == "ckpt-000004"
    # a different init: the policy must come from the checkpoint (the reference is the base model)
    resumed = model_factory(seed=123)
    train(
        _cfg(tmp_path / "b", *data_files, max_steps=6, save_every=3, eval_every=3),
        resume=True,
        model=resumed,
        tokenizer=tok,
        ref_model=model_factory(),
    )
    got = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()

    def strip(lines):
        return [
            {
                k: v
                for k, v in json.loads(x).items()
                if not k.startswith("perf/") or k in ("perf/lr", "perf/grad_norm")
            }
            for x in lines
        ]  # noqa: E731

    for a, b in zip(strip(got), strip(ref)):
        assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert len(got) == len(ref)
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bta'\]"):
        TrainConfig.from_dict({"bta": 3})
    with pytest.raises(ValueError, match="unknown key 'lrr'"):
        TrainConfig().with_overrides(["lrr=1"])
    with pytest.raises(ValueError, match="objective must be one of"):
        TrainConfig(objective="rlhf")
    cfg = TrainConfig().with_overrides(["beta=inf", "chunked=false", "max_steps=7"])
    assert cfg.beta == math.inf and cfg.chunked is False and cfg.max_steps == 7


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, data_files, model_factory, tok):
    model = model_factory()
    with torch.no_grad():
        model.get_output_embeddings().weight[0, 0] = float("nan")
    with pytest.raises((RuntimeError, ValueError), match="non-finite|NaN or infinite"):
        train(_cfg(tmp_path, *data_files, objective="gift"), model=model, tokenizer=tok)


def test_lora_trains_adapters_and_uses_the_base_as_reference(
    tmp_path, data_files, model_factory, tok
):
    model = model_factory()
    base = {id(p): p.detach().clone() for p in model.parameters()}
    last = train(
        _cfg(tmp_path, *data_files, lora_rank=4, lr=5e-2, objective="gift"),
        model=model,
        tokenizer=tok,
    )
    # peft injects adapters into the same modules: every original parameter is untouched
    params = dict(model.named_parameters())
    assert any("lora_" in n for n in params)
    for n, p in params.items():
        if id(p) in base:
            torch.testing.assert_close(p.detach(), base[id(p)], msg=n)
    assert last["val/kl_to_base"] > 1e-6  # the adapters moved the policy away from the reference


def test_mismatched_vocabularies_are_rejected(tmp_path, data_files, tok):
    from giftlab.models import tiny_llama

    with pytest.raises(
        ValueError,
        match=r"has a vocabulary of 104 tokens, ref_model=.* one of 200: they must share",
    ):
        train(
            _cfg(tmp_path, *data_files),
            model=tiny_llama(len(tok)),
            tokenizer=tok,
            ref_model=tiny_llama(200),
        )


def test_tokenizer_without_pad_token_gets_one(tok):
    import copy

    from giftlab.models import prepare_tokenizer

    t = copy.deepcopy(tok)
    t.pad_token = None
    assert prepare_tokenizer(t).pad_token == t.eos_token
