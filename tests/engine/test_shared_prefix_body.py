"""The trainer's body with the batch's shared prefix run once (CausalLMBody, shared_prefix=True,
the default) against each row run whole: the same hidden states and gradients on right-padded
batches of few-shot prompts, for RoPE (Llama), absolute positions (GPT-2), soft-capped Gemma-2
and a sliding window shorter than the rows (Mistral); and the same training run through
`giftlab train`."""

import json

import pytest
import torch

from giftlab.cli import main
from giftlab.engine.objective import CausalLMBody
from giftlab.models import tiny_model, tiny_tokenizer
from tests.helpers import save_tiny_model, write_jsonl

DEMO = "Q: add 1 2\nA: 3\nQ: add 2 2\nA: 4\n"
DTYPE = {"llama": torch.float64, "gpt2": torch.float64, "gemma2": torch.float32}
GRAD_TOL = {torch.float64: 1e-7, torch.float32: 2e-6}  # of the largest gradient entry


def _model(family):
    tok = tiny_tokenizer()
    if family == "mistral-window":
        import transformers

        config = transformers.MistralConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=6,
            pad_token_id=0, bos_token_id=1, eos_token_id=1,
        )  # fmt: skip
        torch.manual_seed(0)
        return transformers.MistralForCausalLM(config).float().train(), tok, torch.float32
    return tiny_model(family, len(tok), seed=1).to(DTYPE[family]).train(), tok, DTYPE[family]


def _batch(tok, questions=("Q: a", "Q: bcd ef", "Q: x y z w v"), demo=DEMO):
    rows = [tok(demo + q, add_special_tokens=False)["input_ids"] for q in questions]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])  # right padding
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "mistral-window"])
def test_hidden_states_and_gradients_equal_each_row_run_whole(family):
    model, tok, dtype = _model(family)
    ids, mask = _batch(tok)
    n = CausalLMBody(model).prefix_length(ids, mask)
    assert n == len(tok(DEMO + "Q: ", add_special_tokens=False)["input_ids"]) - 1 or n >= 8
    real = mask.bool()
    weights = torch.randn(ids.shape + (model.config.hidden_size,), dtype=dtype)
    got = {}
    for shared in (False, True):
        model.zero_grad(set_to_none=True)
        hidden = CausalLMBody(model, shared_prefix=shared)(ids, mask)
        (hidden[real] * weights[real]).sum().backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        got[shared] = (hidden.detach()[real], grads)
    tol = {"rtol": 1e-9, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    torch.testing.assert_close(got[True][0], got[False][0], **tol)
    assert got[True][1].keys() == got[False][1].keys() and got[False][1]
    for k, g in got[False][1].items():
        scale = float(g.abs().max())
        torch.testing.assert_close(
            got[True][1][k], g, rtol=0, atol=GRAD_TOL[dtype] * scale, msg=f"gradient of {k}"
        )


def test_no_prefix_under_gradient_checkpointing_or_without_a_shared_start():
    model, tok, _ = _model("llama")
    ids, mask = _batch(tok)
    body = CausalLMBody(model)
    assert body.prefix_length(ids, mask) >= 8
    assert body.prefix_length(ids[:1], mask[:1]) == 0  # one row: nothing to share
    other, other_mask = _batch(tok, ("no shared start at all", "Q: a b c d e f g h"), demo="")
    assert body.prefix_length(other, other_mask) == 0
    padded = mask.clone()
    padded[1, 0] = 0  # a row padded where the others are not: not shared
    assert body.prefix_length(ids, padded) == 0
    model.gradient_checkpointing_enable()
    assert body.prefix_length(ids, mask) == 0


def test_a_training_run_is_the_same_with_the_prefix_run_once(tmp_path, monkeypatch, capsys):
    save_tiny_model(tmp_path / "tiny")
    rows = [
        {"prompt": DEMO + f"Q: add {a} {b}", "response": str(a + b)}
        for a, b in ((3, 4), (10, 20), (7, 2), (1, 1), (12, 30), (5, 5))
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    calls = []
    real = CausalLMBody.prefix_length

    def counted(self, ids, mask, min_tokens=8):
        calls.append(real(self, ids, mask, min_tokens))
        return calls[-1]

    runs = {}
    for shared in (True, False):
        if shared:
            monkeypatch.setattr(CausalLMBody, "prefix_length", counted)
        else:
            monkeypatch.setattr(CausalLMBody, "prefix_length", lambda self, *a, **k: 0)
        out = tmp_path / f"run-{shared}"
        argv = [
            "train", f"model={tmp_path / 'tiny'}", f"train_file={tmp_path / 'train.jsonl'}",
            "val_file=", "objective=gift", "beta=5", "batch_size=3", "max_steps=3", "lr=1e-2",
            "log_every=1", "save_final=false", "progress=false", f"out_dir={out}",
            "max_length=128", "diag_every=0", "eval_every=0",
        ]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        runs[shared] = [json.loads(x) for x in (out / "metrics.jsonl").open()]
    assert max(calls) >= 8  # the shared path did run
    assert len(runs[True]) == len(runs[False]) == 3
    for a, b in zip(runs[True], runs[False]):
        for key in ("loss/train", "perf/grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
