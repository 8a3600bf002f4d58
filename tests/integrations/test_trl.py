"""GIFTTrainer (TRL) against giftlab's own trainer: same loss and gradients on the same batch, for
every objective; packing and padding-free batches give the per-document loss; training logs TRL's
metrics and GIFT's."""

import json
import math
import shutil

import pytest
import torch

from tests.helpers import save_tiny_model

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402

from giftlab.engine import CausalLMBody, Models, forward, objective_sum  # noqa: E402
from giftlab.flatconfig import ConfigError
from giftlab.integrations.trl import GIFTConfig, GIFTTrainer  # noqa: E402
from giftlab.losses import OBJECTIVES  # noqa: E402
from giftlab.models import tiny_tokenizer  # noqa: E402

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    save_tiny_model(d, seed=3)
    return d


def _dataset(n=12):
    rows = [
        {
            "prompt": [{"role": "user", "content": f"add {a} {b}"}],
            "completion": [{"role": "assistant", "content": str(a * 13 + b)}],
        }
        for a in range(4)
        for b in range(n // 4)
    ]
    return Dataset.from_list(rows)


def _trainer(model_dir, tmp_path, eval_dataset=None, peft_config=None, **kw):
    from transformers import AutoModelForCausalLM

    base = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        learning_rate=1e-2,
        save_strategy="no",
        beta=3.0,
        eta=4.0,
        smoothing=0.1,
        alpha=0.3,
        label_eps=0.2,
        chunk_size=5,
        hyper={"weight": 0.3, "np_weight": 0.3},  # the variants of tests/conftest.py
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    return GIFTTrainer(
        model=model,
        args=GIFTConfig(**(base | kw)),
        train_dataset=_dataset(),
        eval_dataset=eval_dataset,
        processing_class=tiny_tokenizer(),
        peft_config=peft_config,
    )


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_trl_loss_and_gradients_equal_giftlab_trainer(model_dir, tmp_path, objective):
    from transformers import AutoModelForCausalLM

    trainer = _trainer(model_dir, tmp_path, objective=objective)
    batch = {k: v for k, v in next(iter(trainer.get_train_dataloader())).items()}
    policy = trainer.model
    loss = trainer.compute_loss(policy, dict(batch))
    got = torch.autograd.grad(loss, [p for p in policy.parameters()], allow_unused=True)

    ours = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).requires_grad_(False)
    m = Models(policy=ours, body=CausalLMBody(ours), ref=ref, ref_body=CausalLMBody(ref))
    f = forward(m, batch, with_ref=True)
    want_loss = objective_sum(trainer.args, OBJECTIVES[objective], m, f) / f.n
    want = torch.autograd.grad(want_loss, [p for p in ours.parameters()], allow_unused=True)
    torch.testing.assert_close(loss, want_loss)
    for g, w in zip(got, want):
        if g is None or w is None:
            assert g is None and w is None
        else:
            torch.testing.assert_close(g, w)


def test_num_items_in_batch_sets_the_denominator(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path)
    batch = dict(next(iter(trainer.get_train_dataloader())))
    mean = trainer.compute_loss(trainer.model, dict(batch))
    n = int((batch["labels"][:, 1:] != -100).sum())
    total = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=torch.tensor(3 * n))
    # one process: average_tokens_across_devices multiplies by 1
    torch.testing.assert_close(total, mean / 3)


@pytest.mark.parametrize("objective", ["gift", "gift_seq"])
def test_packed_batches_give_the_per_document_loss(model_dir, tmp_path, objective):
    """Packing (padding-free, position_ids restart per document): the same summed loss as the
    documents in an ordinary padded batch, gains of gift_seq reset at document boundaries."""
    padded = _trainer(
        model_dir, tmp_path / "a", objective=objective, per_device_train_batch_size=12
    )
    packed = _trainer(
        model_dir,
        tmp_path / "b",
        objective=objective,
        packing=True,
        packing_strategy="bfd",
        per_device_train_batch_size=12,
    )
    sums = []
    for tr in (padded, packed):
        batch = dict(next(iter(tr.get_train_dataloader())))
        n = int((batch["labels"][:, 1:] != -100).sum())
        sums.append((tr.compute_loss(tr.model, batch) * n, n))
    assert "position_ids" in batch and batch["input_ids"].shape[0] == 1
    assert sums[0][1] == sums[1][1]
    torch.testing.assert_close(sums[1][0], sums[0][0])


def test_training_logs_trl_and_gift_metrics_and_moves_weights(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path, max_steps=3)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3
    for key in (
        "entropy",
        "mean_token_accuracy",
        "num_tokens",
        "gift/gate_w_mean",
        "gift/gate_w_frac_below_half",
        "gift/target_entropy",
        "gift/kl_to_base",
    ):
        assert all(key in h and math.isfinite(h[key]) for h in logs), key
    assert logs[0]["gift/kl_to_base"] == pytest.approx(0, abs=1e-12)  # policy = reference at start
    assert logs[-1]["gift/kl_to_base"] > 0
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    ref_after = trainer.accelerator.unwrap_model(trainer.ref_model).state_dict()
    for k, v in ref_after.items():  # the reference stays frozen
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_evaluation_returns_outputs(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path, eval_dataset=_dataset(8))
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and "eval_gift/gate_w_mean" in metrics


def test_bad_objective_is_named():
    with pytest.raises(ValueError, match="objective must be one of"):
        GIFTConfig(output_dir="x", objective="rlhf", report_to=[], use_cpu=True)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"beta": "5"}, r"beta must be a number \(float\), got '5'"),
        ({"alpha": float("nan")}, r"alpha must be a finite number >= 0, got nan"),
        ({"clip_low": -1.0}, r"clip_low must be in \[0, 1\), got -1.0"),
        ({"beta": 1e39}, r"beta must be in \[0, 1e30\] or inf"),
        ({"kernel": "foo"}, r"kernel must be one of"),
        ({"ref_cache_dtype": "int8"}, r"ref_cache_dtype must be one of"),  # was: int rounding
        ({"ref_cache_top_k": 0}, r"ref_cache_top_k must be an integer >= 1"),
    ],
)
def test_gift_config_checks_the_shared_objective_rules(kw, message):
    from giftlab.flatconfig import ConfigError

    with pytest.raises(ConfigError, match=message):
        GIFTConfig(output_dir="x", report_to=[], use_cpu=True, **kw)


def _conversations(n=8):
    return Dataset.from_list(
        [
            {
                "messages": [
                    {"role": "system", "content": "Solve it."},
                    {"role": "user", "content": f"add {a} {b}"},
                    {"role": "assistant", "content": str(a + b)},
                ]
            }
            for a in range(n // 2)
            for b in range(2)
        ]
    )


def test_conversations_train_on_the_assistant_turns_as_giftlab_train_does(model_dir, tmp_path):
    from giftlab.data.tokenize import encode_records

    data = _conversations()
    trainer = _trainer(model_dir, tmp_path, max_steps=1)
    trainer = GIFTTrainer(
        model=trainer.model,
        args=trainer.args,
        train_dataset=data,
        processing_class=tiny_tokenizer(),
    )
    tok = tiny_tokenizer()
    for i, row in enumerate(trainer.train_dataset):
        msgs = data[i]["messages"]
        record = {"messages": msgs[:-1], "response": msgs[-1]["content"], "where": f"r{i}"}
        (own,), _ = encode_records([record], tok, 256)
        assert row["input_ids"][: len(own["input_ids"])] == own["input_ids"]
        labels = row["labels"]
        assert labels[: len(own["labels"])] == own["labels"]  # system and user turns: -100
        assert all(t == -100 for t in labels[len(own["labels"]) :])
        assert tok.decode([t for t in labels if t != -100]) == msgs[-1]["content"] + "<|end|>"


def test_every_token_is_trained_when_asked(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path, max_steps=1, assistant_only_loss=False)
    trainer = GIFTTrainer(
        model=trainer.model,
        args=trainer.args,
        train_dataset=_conversations(),
        processing_class=tiny_tokenizer(),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    real = batch["attention_mask"].bool() if "attention_mask" in batch else batch["labels"] != -100
    assert bool((batch["labels"][real] != -100).all())


def test_a_template_that_is_not_prefix_preserving_is_refused_with_the_way_out(model_dir, tmp_path):
    tok = tiny_tokenizer()
    tok.chat_template = (  # puts the number of messages first: no prefix of the whole
        "{{ messages | length }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
        "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    trainer = _trainer(model_dir, tmp_path, max_steps=1)
    with pytest.raises(ValueError, match=r"train_dataset record 0: .*assistant_only_loss=False"):
        GIFTTrainer(
            model=trainer.model,
            args=trainer.args,
            train_dataset=_conversations(),
            processing_class=tok,
        )


def _naive_ce(model, dataloader):
    total, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for b in dataloader:
            logits = model(input_ids=b["input_ids"], attention_mask=b.get("attention_mask")).logits
            labels = b["labels"][:, 1:]
            valid = labels != -100
            logp = torch.log_softmax(logits[:, :-1][valid].double(), -1)
            total -= float(logp.gather(-1, labels[valid][:, None]).sum())
            n += int(valid.sum())
    return total / n


def test_evaluation_reports_the_held_out_one_hot_ce(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path, eval_dataset=_dataset(8), objective="gift")
    metrics = trainer.evaluate()
    want = _naive_ce(trainer.model, trainer.get_eval_dataloader())
    assert metrics["eval_ce"] == pytest.approx(want, rel=1e-9)
    assert metrics["eval_ce"] != pytest.approx(metrics["eval_loss"], rel=1e-3)  # not the objective


def test_the_checkpoint_is_chosen_by_held_out_ce(model_dir, tmp_path):
    trainer = _trainer(
        model_dir,
        tmp_path,
        eval_dataset=_dataset(8),
        max_steps=4,
        learning_rate=0.05,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
        metric_for_best_model="eval_ce",
        greater_is_better=False,
        load_best_model_at_end=True,
    )
    trainer.train()
    ces = {h["step"]: h["eval_ce"] for h in trainer.state.log_history if "eval_ce" in h}
    assert len(ces) == 4
    best_step = min(ces, key=ces.get)
    assert trainer.state.best_metric == pytest.approx(ces[best_step])
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")


def test_the_model_card_names_gift_beta_the_base_model_and_the_data(model_dir, tmp_path):
    trainer = _trainer(model_dir, tmp_path, objective="gift", beta=3.0)
    trainer.create_model_card()
    card = (tmp_path / "out" / "README.md").read_text()
    # a local folder with no hub id behind it: no base_model line, its name, never its path
    assert "base_model:" not in card and str(tmp_path) not in card and str(model_dir) not in card
    assert f"Fine-tuned from {model_dir.name} (gift" in card
    assert "| objective | gift |" in card and "| beta | 3 |" in card
    assert "GIFT: finite-temperature SFT" in card and "fine-tuned version of [None]" not in card
    assert "12 records" in card  # the data it was given


@pytest.mark.parametrize("packing", [False, True])
def test_a_reference_cache_gives_the_live_loss_and_keeps_no_reference(model_dir, tmp_path, packing):
    """GIFTTrainer(ref_cache=DIR): the cache is built once from the prepared data (K >= V,
    float64: exact), training keeps no reference model, and loss and gradients equal the live
    reference's, padded or packed; a second trainer reads the cache without building it."""
    kw = dict(objective="gift", per_device_train_batch_size=12, ref_cache_dtype="float64")
    kw |= {"packing": True, "packing_strategy": "bfd"} if packing else {}
    live = _trainer(model_dir, tmp_path / "live", **kw)
    cache = tmp_path / "cache"
    cached = _trainer(model_dir, tmp_path / "c1", ref_cache=str(cache), ref_cache_top_k=10**6, **kw)
    assert cached.ref_model is None and (cache / "manifest.json").exists()
    built = (cache / "manifest.json").read_text()
    again = _trainer(model_dir, tmp_path / "c2", ref_cache=str(cache), **kw)
    assert (cache / "manifest.json").read_text() == built  # read, not rebuilt
    if not packing:  # a K or dtype asked for that the cache does not hold is refused, not ignored
        from giftlab.engine.cache import RefCacheError

        with pytest.raises(RefCacheError, match=r"ref_cache_top_k=8, but ref_cache=.* holds"):
            _trainer(model_dir, tmp_path / "c3", ref_cache=str(cache), ref_cache_top_k=8, **kw)
    results = []
    for tr in (live, cached, again):
        batch = dict(next(iter(tr.get_train_dataloader())))
        loss = tr.compute_loss(tr.model, dict(batch))
        results.append((loss, torch.autograd.grad(loss, list(tr.model.parameters()))))
    for loss, grads in results[1:]:
        torch.testing.assert_close(loss, results[0][0], rtol=1e-10, atol=1e-12)
        for g, w in zip(grads, results[0][1]):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)


def test_a_cache_of_another_reference_is_refused(model_dir, tmp_path):
    from giftlab.refcache import RefCacheError

    _trainer(model_dir, tmp_path / "a", ref_cache=str(tmp_path / "cache"))
    other = tmp_path / "other"
    save_tiny_model(other, seed=9)
    with pytest.raises(RefCacheError, match="built for another run: reference weights"):
        _trainer(other, tmp_path / "b", ref_cache=str(tmp_path / "cache"))


def test_a_saved_folder_gets_the_card_and_no_local_path(model_dir, tmp_path):
    """save_model("final") writes giftlab's card into final/ (not PEFT's template); a LoRA
    adapter's config names the base by its folder's name or hub id, never an absolute path; a base
    trained by giftlab (its card names a hub id) passes that id on."""
    from peft import LoraConfig

    trainer = _trainer(model_dir, tmp_path, objective="gift", peft_config=LoraConfig(r=2))
    final = tmp_path / "final"
    trainer.save_model(str(final))
    card = (final / "README.md").read_text()
    assert "| objective | gift |" in card and "gift-variant" not in card
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == model_dir.name
    for f in final.iterdir():
        if f.suffix in (".json", ".md"):
            assert str(tmp_path) not in f.read_text(), f.name
    # a base whose own card names its hub id: the id is the card's base_model
    hub_base = tmp_path / "hub_base"
    shutil.copytree(model_dir, hub_base)
    (hub_base / "README.md").write_text("---\nbase_model: org/some-model\n---\n")
    trainer = _trainer(hub_base, tmp_path / "h", objective="gift")
    trainer._base_name = str(hub_base)
    trainer.create_model_card()
    assert "base_model: org/some-model" in (tmp_path / "h" / "out" / "README.md").read_text()


def test_trl_options_that_gift_replaces_are_refused_and_the_assistant_default_is_said():
    with pytest.raises(ConfigError, match=r"loss_type='dft' is TRL's own loss.*objective='dft'"):
        GIFTConfig(output_dir="x", loss_type="dft", report_to=[], use_cpu=True)
    with pytest.raises(ConfigError, match="use_liger_kernel"):
        GIFTConfig(output_dir="x", use_liger_kernel=True, report_to=[], use_cpu=True)
    GIFTConfig(output_dir="x", loss_type="nll", report_to=[], use_cpu=True)


def test_the_assistant_only_default_is_said_at_start(model_dir, tmp_path):
    with pytest.warns(
        UserWarning, match=r"assistant_only_loss=True \(giftlab's default; TRL's is False\)"
    ):
        _trainer(model_dir, tmp_path, objective="gift")


def test_a_missing_reference_folder_is_named_not_sent_to_the_hub(model_dir, tmp_path):
    """Before: GIFTTrainer(ref_model="nosuch") answered with the hub's connection error."""
    with pytest.raises(FileNotFoundError, match=r"ref_model=nosuch: no such folder"):
        _trainer(model_dir, tmp_path, ref_model_path="nosuch")
    with pytest.raises(FileNotFoundError, match=r"ref_model=nosuch: no such folder"):
        _trainer(model_dir, tmp_path, ref_model_path="nosuch", ref_cache=str(tmp_path / "c"))
