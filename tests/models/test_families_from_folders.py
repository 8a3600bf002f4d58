"""Every model family through the user's path: a tiny model of each family saved with
`save_pretrained` (config, weights, tokenizer) and loaded from its folder by `giftlab train`,
`giftlab rl`, `giftlab eval`, `giftlab ref-cache` and `GIFTTrainer(PATH)`, in float32 and bf16,
with giftlab's own loading arguments (the attention kernel is transformers' choice for the class:
Gemma-2 has no SDPA). Each command's numbers are held against the naive formula on the logits of
the same folder loaded independently by transformers (float64):

- train: the first step's loss/train (GIFT, beta 3) is CE(softmax(log pi0 + beta onehot(y)), pi)
  averaged over the response tokens of the one batch;
- ref-cache: the cached gold log-probabilities are log_softmax of the reference's logits;
- eval and rl: the model is its own reference, so the KL to base is 0;
- GIFTTrainer: compute_loss on a batch equals the naive GIFT loss.

Tolerances (loss): float32 paths agree with the float64 formula to ~1e-6 relative here, checked at 1e-4;
bf16 autocast rounds logits to 8 mantissa bits (eps 2^-8 = 3.9e-3), checked at 8 eps."""

import json

import pytest
import torch

from giftlab.cli import main
from giftlab.models import FAMILIES, tiny_model, tiny_tokenizer
from tests.helpers import write_jsonl

BETA = 3.0
RTOL = {"float32": 1e-4, "bf16": 8 * 2.0**-8}
ROWS = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(2) for b in range(2)]
TASKS = [{"task": "math", "prompt": f"What is {a}+{a}?", "answer": str(2 * a)} for a in range(2)]
PRECISIONS = ["float32", "bf16"]
# |KL| of a model to itself: float32 rounding; in bf16 the log-probs (|log p| <~ 6 here) carry
# bf16 rounding, 6 * 2^-8 per token at most
KL_TOL = {"float32": 1e-6, "bf16": 6 * 2.0**-8}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """family -> a saved model folder (float32 weights, the tests' tokenizer), plus the data."""
    root = tmp_path_factory.mktemp("families")
    tok = tiny_tokenizer()
    out = {}
    for family in FAMILIES:
        try:
            model = tiny_model(family, len(tok), seed=1)
        except ImportError:  # the test itself skips, naming the class
            continue
        model.save_pretrained(root / family)
        tok.save_pretrained(root / family)
        out[family] = root / family
    write_jsonl(root / "train.jsonl", ROWS)
    write_jsonl(root / "math.jsonl", TASKS)
    return root, out


def _folder(folders, family):
    root, out = folders
    if family not in out:
        pytest.skip(f"the installed transformers has no {FAMILIES[family][1]}")
    return root, out[family]


def _reference_logp(folder, texts_ids):
    """log_softmax of the folder's model logits, loaded by transformers alone, in float64."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    with torch.no_grad():
        return [torch.log_softmax(model(input_ids=ids[None]).logits[0], -1) for ids in texts_ids]


def _examples(root, folder):
    """The training records tokenised by the folder's tokenizer as AutoTokenizer loads it (a
    Qwen2 folder reloads the saved tokenizer as Qwen2's class, with other ids)."""
    from giftlab.data import read_records
    from giftlab.data.tokenize import encode_records
    from giftlab.models import load_tokenizer

    examples, _ = encode_records(
        read_records(root / "train.jsonl"), load_tokenizer(str(folder)), 64
    )
    return examples


def _naive_gift(folder, examples, beta=BETA):
    """Mean over response tokens of CE(softmax(log pi0 + beta onehot(y)), pi) with pi = pi0."""
    ids = [torch.as_tensor(e["input_ids"]) for e in examples]
    total, n = 0.0, 0
    for e, lp in zip(examples, _reference_logp(folder, ids)):
        labels = torch.as_tensor(e["labels"])[1:]
        valid = labels != -100
        logp, y = lp[:-1][valid], labels[valid]
        q = torch.softmax(logp + beta * torch.nn.functional.one_hot(y, logp.shape[-1]), -1)
        total += float(-(q * logp).sum())
        n += int(valid.sum())
    return total / n


def _precision_args(precision):
    return ["bf16=true"] if precision == "bf16" else []


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_giftlab_train_from_a_saved_folder_logs_the_naive_gift_loss(
    folders, family, precision, tmp_path
):
    root, folder = _folder(folders, family)
    out = tmp_path / "run"
    argv = [
        "train",
        f"model={folder}",
        f"train_file={root / 'train.jsonl'}",
        "val_file=",
        "objective=gift",
        f"beta={BETA}",
        "max_steps=1",
        f"batch_size={len(ROWS)}",
        "diag_every=0",
        "save_final=false",
        "max_length=64",
        "progress=false",
        f"out_dir={out}",
        *_precision_args(precision),
    ]
    assert main(argv) == 0
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    want = _naive_gift(folder, _examples(root, folder))
    assert first["loss/train"] == pytest.approx(want, rel=RTOL[precision])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_giftlab_ref_cache_from_a_saved_folder_holds_the_models_log_probabilities(
    folders, family, tmp_path
):
    from giftlab.engine.cache import RefCache

    root, folder = _folder(folders, family)
    argv = [
        "ref-cache",
        f"model={folder}",
        f"train_file={root / 'train.jsonl'}",
        "val_file=",
        "top_k=4",
        "dtype=float32",
        "max_length=64",
        "progress=false",
        f"out_dir={tmp_path / 'cache'}",
    ]
    assert main(argv) == 0
    examples = _examples(root, folder)
    rows = RefCache(tmp_path / "cache").rows("train", list(range(len(examples))), "cpu")
    want = []
    ids = [torch.as_tensor(e["input_ids"]) for e in examples]
    for e, lp in zip(examples, _reference_logp(folder, ids)):
        labels = torch.as_tensor(e["labels"])[1:]
        valid = labels != -100
        want.append(lp[:-1][valid].gather(-1, labels[valid][:, None])[:, 0])
    torch.testing.assert_close(rows.gold.double(), torch.cat(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_giftlab_eval_from_a_saved_folder_finds_no_kl_to_itself(
    folders, family, precision, tmp_path
):
    root, folder = _folder(folders, family)
    out = tmp_path / "eval.json"
    argv = [
        "eval",
        f"model={folder}",
        f"ref_model={folder}",
        f"data={root / 'math.jsonl'}",
        "samples=2",
        "limit=2",
        "max_new_tokens=3",
        f"out={out}",
        *_precision_args(precision),
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["n_problems"] == 2
    assert abs(result["kl_to_base_per_token"]) <= KL_TOL[precision]  # one model loaded twice
    # every completion beside the counts, and the counts are theirs
    rows = [json.loads(x) for x in (tmp_path / "eval.completions.jsonl").read_text().splitlines()]
    assert [(r["problem"], r["sample"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    counted = [sum(r["correct"] for r in rows if r["problem"] == p) for p in (0, 1)]
    assert counted == result["per_problem_correct"]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_giftlab_rl_from_a_saved_folder_starts_at_its_reference(
    folders, family, precision, tmp_path
):
    root, folder = _folder(folders, family)
    out = tmp_path / "rl"
    argv = [
        "rl",
        f"model={folder}",
        f"ref_model={folder}",
        f"train_file={root / 'math.jsonl'}",
        "max_steps=1",
        "prompts_per_step=2",
        "group_size=2",
        "max_new_tokens=3",
        "progress=false",
        "save_final=false",
        f"out_dir={out}",
        *_precision_args(precision),
    ]
    assert main(argv) == 0
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert all(torch.isfinite(torch.tensor(v)) for v in first.values() if isinstance(v, float)), (
        first
    )
    # the sampled tokens are scored by the policy and by the reference (the same folder); in
    # bf16 the reference's weights are bf16 and the policy's float32 under autocast
    assert abs(first["rl/kl_to_base_k1"]) <= KL_TOL[precision]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gift_trainer_from_a_saved_folder_gives_the_naive_gift_loss(
    folders, family, precision, tmp_path
):
    pytest.importorskip("trl")
    from datasets import Dataset

    from giftlab.integrations.trl import GIFTConfig, GIFTTrainer

    root, folder = _folder(folders, family)
    args = GIFTConfig(
        output_dir=str(tmp_path),
        objective="gift",
        beta=BETA,
        chunk_size=5,
        report_to=[],
        use_cpu=True,
        bf16=precision == "bf16",
        save_strategy="no",
        max_steps=1,
    )
    trainer = GIFTTrainer(
        model=str(folder),
        args=args,
        train_dataset=Dataset.from_list(
            [{"prompt": r["prompt"], "completion": r["response"]} for r in ROWS]
        ),
        processing_class=tiny_tokenizer(),
    )
    trainer.model.eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    with trainer.compute_loss_context_manager():
        loss = trainer.compute_loss(trainer.model, dict(batch)).detach()
    labels = batch["labels"][:, 1:]
    valid = labels != -100
    ids = list(
        batch["input_ids"]
    )  # right-padded: a causal model's logits before the pad are unchanged
    total, n = 0.0, 0
    for lp, lab, ok in zip(_reference_logp(folder, ids), labels, valid):
        logp, y = lp[:-1][ok], lab[ok]
        q = torch.softmax(logp + BETA * torch.nn.functional.one_hot(y, logp.shape[-1]), -1)
        total += float(-(q * logp).sum())
        n += int(ok.sum())
    assert float(loss) == pytest.approx(total / n, rel=RTOL[precision])
    trainer.train()  # and one optimiser step runs


@pytest.mark.parametrize("command", ["train", "rl", "eval", "ref-cache"])
def test_an_attention_kernel_the_class_lacks_is_one_line_naming_the_class_and_the_choices(
    folders, command, tmp_path, capsys
):
    root, folder = _folder(folders, "gemma2")  # Gemma-2 has no SDPA kernel in transformers 5
    from transformers import Gemma2ForCausalLM

    if Gemma2ForCausalLM._supports_sdpa:
        pytest.skip("this transformers gives Gemma-2 an SDPA kernel")
    data = root / ("train.jsonl" if command in ("train", "ref-cache") else "math.jsonl")
    key = "data" if command == "eval" else "train_file"
    argv = [command, f"model={folder}", f"{key}={data}", "attn_implementation=sdpa"]
    if command in ("rl", "eval"):
        argv.append(f"ref_model={folder}")
    argv.append(f"out={tmp_path / 'e.json'}" if command == "eval" else f"out_dir={tmp_path / 'o'}")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "attn_implementation=sdpa: Gemma2ForCausalLM" in err[0]
    assert "['auto', 'eager'" in err[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "e.json").exists()  # no trace


def test_an_unknown_attention_kernel_is_refused_with_the_allowed_values(folders, capsys):
    root, folder = _folder(folders, "llama")
    argv = ["train", f"model={folder}", "attn_implementation=fast"]
    assert main(argv) == 2
    assert "attn_implementation must be one of ['auto', 'sdpa', 'eager'" in capsys.readouterr().err
