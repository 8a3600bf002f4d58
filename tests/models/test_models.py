"""giftlab.models: names told apart (bundled, local folder, hub id), folders that are not models
named, one vocabulary check, and a saved tiny model that loads back with the same logits."""

import os

import pytest
import torch

from giftlab.models import (
    check_model_name,
    check_same_vocabulary,
    load_model,
    load_tokenizer,
    tiny_llama,
    tiny_tokenizer,
)
from giftlab.models.loading import is_hub_id
from tests.helpers import save_tiny_model


def test_a_saved_tiny_model_loads_back_with_the_same_logits(tmp_path):
    save_tiny_model(tmp_path / "m", seed=4)
    model, tok = load_model(str(tmp_path / "m")), load_tokenizer(str(tmp_path / "m"))
    ids = torch.tensor([tok.encode("add 1 2")])
    torch.testing.assert_close(model(ids).logits, tiny_llama(len(tok), seed=4)(ids).logits)
    assert tok.pad_token is not None and tok.pad_token != tok.eos_token


def test_names_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("Qwen/Qwen2.5-0.5B")
    (tmp_path / "runs").mkdir()
    assert not is_hub_id("runs/final")  # a local runs/ folder: a path, even when missing
    assert not is_hub_id("./a/b") and not is_hub_id("/abs/path") and not is_hub_id("a/b/c")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "no such folder"),
        (lambda d: d.mkdir(), "has no config.json"),
        (
            lambda d: (d.mkdir(), tiny_llama(len(tiny_tokenizer())).config.save_pretrained(d)),
            "has a config.json but no weights",
        ),
        (
            lambda d: (
                d.mkdir(),
                (d / ".giftlab-run").write_text("x"),
                save_tiny_model(d / "final"),
            ),
            r"is a giftlab run folder, not a model: give one of its model folders \(.*/final\)",
        ),
    ],
)
def test_folders_that_are_not_models_are_named(tmp_path, make, message):
    folder = tmp_path / "m"
    make(folder)
    with pytest.raises(FileNotFoundError, match=message):
        check_model_name(str(folder), "model")
    if folder.exists() and (folder / "final").exists():
        check_model_name(str(folder / "final"))  # the folder it names loads


def test_a_hub_id_offline_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(FileNotFoundError, match="cannot be downloaded with HF_HUB_OFFLINE set"):
        check_model_name("org/model", "ref_model")


def test_one_vocabulary_check():
    tok = tiny_tokenizer()
    a, b = tiny_llama(len(tok)), tiny_llama(len(tok) + 3)
    check_same_vocabulary(a, tiny_llama(len(tok)), tokenizer=tok)
    with pytest.raises(ValueError, match=r"x has a vocabulary of \d+ tokens, y one of \d+"):
        check_same_vocabulary(a, b, ("x", "y"))
    small = tiny_llama(10)
    with pytest.raises(ValueError, match=r"the tokenizer has \d+ tokens but the model's"):
        check_same_vocabulary(small, small, tokenizer=tok)


def test_a_hub_id_that_cannot_be_loaded_is_one_line_naming_it(monkeypatch):
    import transformers

    def unreachable(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", unreachable)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", unreachable)
    for load in (load_tokenizer, load_model):
        with pytest.raises(FileNotFoundError, match=r"model 'org/name': no local folder .* hub id"):
            load("org/name")
