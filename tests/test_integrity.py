"""Issue 27, what giftlab reads back and what it is given: values that used to pass silently
are refused, naming what and where (each case failed before its fix)."""

import json
import os

import numpy as np
import pytest

from giftlab.data.records import read_records
from giftlab.data.verifiers import VerifierError, register_verifier, score
from giftlab.errors import InputError
from giftlab.rewards import correct_reward, partial_credit_reward
from giftlab.theory.simulator import exact_pass_at_k
from tests.helpers import exact_variant_module
from tests.test_cli_errors import env as env  # noqa: F401 - the shared fixture


@pytest.mark.parametrize("value", [5.0, -3.0, float("nan")])
def test_a_verifier_score_outside_0_1_is_refused_not_passed_on(value):
    register_verifier(f"odd_{abs(hash(value))}", lambda r, c, v=value: v)
    record = {"task": f"odd_{abs(hash(value))}", "where": "data.jsonl:3"}
    with pytest.raises(VerifierError, match=r"data.jsonl:3: .* returned .*in \[0, 1\]"):
        score(record, "x")
    with pytest.raises(VerifierError):
        partial_credit_reward(completions=["x"], task=[record["task"]])


def test_reward_columns_of_another_length_are_named():
    with pytest.raises(InputError, match="column 'answer' holds 1 values for 2 completions"):
        correct_reward(completions=["1", "2"], task=["math", "math"], answer=["1"])


def test_exact_pass_at_k_refuses_what_is_not_a_probability():
    np.testing.assert_allclose(exact_pass_at_k(np.array([0.5]), [2]), [[0.75]])
    np.testing.assert_allclose(exact_pass_at_k(np.array([1.0 + 1e-12]), [3]), [[1.0]])  # round-off
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="correct_mass must be probabilities"):
            exact_pass_at_k(np.array([bad]), [4])


def test_a_record_with_a_duplicate_key_is_refused_with_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"prompt": "q", "response": "a"})
    path.write_text(good + "\n" + '{"prompt": "q", "response": "a", "response": "b"}\n')
    with pytest.raises(InputError, match=r"d.jsonl:2: the key 'response' appears twice"):
        read_records(path)


def test_a_lone_surrogate_in_a_record_is_named_with_its_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"prompt": "ok", "response": "a"}\n{"prompt": "bad \\ud800", "response": "a"}\n'
    )
    with pytest.raises(InputError, match=r"s.jsonl:2: holds a lone UTF-16 surrogate"):
        read_records(path)


def test_a_truncated_cache_shard_is_named(tmp_path):
    """Before: numpy's mmap error, with no file named."""
    from giftlab.data import encode_records
    from giftlab.engine.cache import RefCache, RefCacheError, new_manifest
    from giftlab.models import tiny_llama, tiny_tokenizer
    from giftlab.refcache import write_cache

    tok = tiny_tokenizer()
    recs = [
        {"messages": [{"role": "user", "content": f"add {a}"}], "response": str(a)}
        for a in range(3)
    ]
    examples, _ = encode_records(recs, tok, 64)
    out = tmp_path / "cache"
    out.mkdir()
    manifest = new_manifest({"reference weights": "x"}, 4, "float32", 512)
    settings = {"top_k": 4, "dtype": "float32", "shard_examples": 512, "batch_size": 2}
    model = tiny_llama(len(tok), seed=0)
    write_cache(out, manifest, {"train": examples}, model, tok.pad_token_id, settings, False)
    logp = out / "train" / "00000" / "logp.npy"
    logp.write_bytes(logp.read_bytes()[: logp.stat().st_size // 2])
    with pytest.raises(InputError, match=r"00000/logp.npy has \d+ bytes, \d+ were written"):
        RefCache(out).rows("train", [0], "cpu")
    del RefCacheError


# -- the reference cache's integrity through the CLI (issue 27's silent cases) --------------------


def _cache_args(env, out, *extra):
    return [
        "ref-cache",
        f"model={env / 'model'}",
        f"train_file={env / 'train.jsonl'}",
        "val_file=",
        "top_k=4",
        "max_length=64",
        f"out_dir={out}",
        *extra,
    ]


def _train_from(env, cache, out):
    from tests.test_cli_errors import _train_args

    return ["train", *_train_args(env), "objective=gift", f"ref_cache={cache}", f"out_dir={out}"]


def _overwrite_bytes(path):
    """The last 16 bytes of the file's data replaced by others: same size, same header."""
    data = bytearray(path.read_bytes())
    data[-16:] = bytes((b + 1) % 256 for b in data[-16:])
    path.write_bytes(bytes(data))


def _edit_dtype(path):
    manifest = json.loads(path.read_text())
    manifest["dtype"] = "bfloat16"  # the user's edit: the arrays are float16
    path.write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize(
    "damage, file, said",
    [
        (_overwrite_bytes, "train/00000/logp.npy", "its content changed after giftlab wrote it"),
        (_overwrite_bytes, "train/00000/ids.npy", "its content changed after giftlab wrote it"),
        (_edit_dtype, "manifest.json", "was edited after giftlab wrote it"),
    ],
    ids=["logp bytes", "ids bytes", "manifest dtype"],
)
def test_a_cache_changed_after_it_was_built_is_refused_naming_the_file(
    env, tmp_path, capsys, damage, file, said
):
    """Before: bytes of logp.npy overwritten (same size) trained with exit 0 and another loss;
    the manifest's dtype edited from float16 to bfloat16 was believed."""
    from giftlab.cli import main

    cache = tmp_path / "cache"
    assert main(_cache_args(env, cache)) == 0
    assert main(_train_from(env, cache, tmp_path / "ok")) == 0  # the cache as built trains
    damage(cache / file)
    capsys.readouterr()
    assert main(_train_from(env, cache, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert str(cache / file) in err and said in err and "Traceback" not in err
    assert not (tmp_path / "run" / "ckpt-000002").exists()


def test_a_cache_of_an_older_giftlab_without_checksums_is_refused_with_the_way_out(env, tmp_path):
    from giftlab.cli import main
    from giftlab.engine.cache import RefCache, RefCacheError

    cache = tmp_path / "cache"
    assert main(_cache_args(env, cache)) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    old = {k: v for k, v in manifest.items() if k not in ("files", "checksum")} | {"version": 1}
    (cache / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(RefCacheError, match=r"older giftlab .*overwrite=true"):
        RefCache(cache)
    assert main(_cache_args(env, cache, "overwrite=true")) == 0  # the way out works
    RefCache(cache).rows("train", [0], "cpu")


def test_a_reference_with_another_vocabulary_is_refused_before_the_folder(env, tmp_path, capsys):
    """Before: cached without a word (a 200-token reference for a 3x-token policy)."""
    from giftlab.cli import main
    from giftlab.models import config_vocab_size

    out = tmp_path / "cache"
    argv = _cache_args(env, out, f"ref_model={env / 'big_vocab'}")
    assert main(argv) == 2
    err = capsys.readouterr().err
    own = config_vocab_size(str(env / "model"))
    assert f"vocabulary of 200 tokens, model={env / 'model'} one of {own}" in err
    assert own != 200 and not out.exists()


def test_two_builds_into_one_cache_folder_at_once_are_refused(env, tmp_path, capsys):
    """Before: two builds 0.5 s apart both exited 0 and the first reported the wrong K. The
    folder's lock is held here as the first build holds it (flock: per open file)."""
    from giftlab.cli import main
    from giftlab.outputs import acquire_lock, release_lock

    out = tmp_path / "cache"
    out.mkdir()
    fd = acquire_lock(out / ".lock", "first build")
    try:
        assert main(_cache_args(env, out, "top_k=8")) == 2
        err = capsys.readouterr().err
        assert f"out_dir={out} is in use by another giftlab command (pid {os.getpid()})" in err
        assert [p.name for p in out.iterdir()] == [".lock"]
    finally:
        release_lock(fd)
    assert main(_cache_args(env, out, "top_k=8")) == 0  # once the first is done
    from giftlab.engine.cache import RefCache

    assert RefCache(out).manifest["top_k"] == 8


def test_two_validations_into_one_out_at_once_are_refused(tmp_path, capsys, monkeypatch):
    """Before: two validations into one --out at once mixed their files."""
    from giftlab.cli import main
    from giftlab.outputs import OUT_LOCK, acquire_lock, release_lock

    spec = exact_variant_module(tmp_path, monkeypatch, "integrity_variant_mod")
    out = tmp_path / "work"
    out.mkdir()
    fd = acquire_lock(out / OUT_LOCK, "first validation")
    argv = ["validate", spec, "--search", "0", "--seeds", "1"]
    try:
        assert main([*argv, "--out", str(out)]) == 2
        assert "is in use by another giftlab command" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [OUT_LOCK]
    finally:
        release_lock(fd)
    assert main([*argv, "--out", str(out)]) == 0  # once the first is done


# -- resume reads the run's contents back, checked (issue 27's silent resume cases) ---------------


def _run(env, out, *extra):
    from tests.test_cli_errors import _train_args

    return ["train", *_train_args(env), f"out_dir={out}", "save_every=1", *extra]


def test_a_run_whose_config_json_is_gone_resumes_with_its_checkpoint_s_settings(
    env, tmp_path, capsys
):
    """Before: resumed with lr=1e-3 objective=sft written in the new config while the
    optimiser kept the run's lr. Now the newest checkpoint's record stands in (and says so):
    other settings are refused, the run's own resume."""
    from giftlab.cli import main

    out = tmp_path / "run"
    assert main(_run(env, out, "lr=1e-5", "objective=gift")) == 0
    (out / "config.json").unlink()
    capsys.readouterr()
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3", "lr=1e-3"]) == 2
    err = capsys.readouterr().err
    assert "lr 1e-05 -> 0.001" in err and not (out / "ckpt-000003").exists()
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3", "objective=sft"]) == 2
    assert "objective 'gift' -> 'sft'" in capsys.readouterr().err
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3"]) == 0
    said = capsys.readouterr().out
    assert "config.json is missing; the settings recorded in ckpt-000002 (step 2) stand in" in said
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["lr"], config["objective"], config["max_steps"]) == (1e-5, "gift", 3)


def test_a_run_whose_config_json_is_gone_and_no_record_holds_its_settings_is_refused(
    env, tmp_path, capsys
):
    """A checkpoint of an older giftlab (no giftlab-files.json) whose state holds no settings."""
    import torch

    from giftlab.cli import main

    out = tmp_path / "run"
    assert main(_run(env, out)) == 0
    (out / "config.json").unlink()
    for ckpt in out.glob("ckpt-*"):
        (ckpt / "giftlab-files.json").unlink()
        state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
        del state["config"]
        torch.save(state, ckpt / "trainer_state.pt")
    assert main(["train", *_run(env, out)[1:], "--resume", "max_steps=3"]) == 2
    assert "no checkpoint of the run records its settings" in capsys.readouterr().err


def test_an_edited_config_json_is_refused_on_resume(env, tmp_path, capsys):
    from giftlab.cli import main

    out = tmp_path / "run"
    assert main(_run(env, out, "lr=1e-5")) == 0
    info = json.loads((out / "config.json").read_text())
    info["config"]["lr"] = 1e-3  # the edit a user might make to 'change' the run
    (out / "config.json").write_text(json.dumps(info, indent=2))
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "config.json was edited after giftlab wrote it" in err
    assert not (out / "ckpt-000003").exists()


def test_a_training_file_changed_since_the_run_started_is_refused_on_resume(env, tmp_path, capsys):
    """Before: a training file whose content changed after step 2 was trained on, exit 0."""
    import shutil

    from giftlab.cli import main

    data = tmp_path / "train.jsonl"
    shutil.copy(env / "train.jsonl", data)
    out = tmp_path / "run"
    assert main(_run(env, out, f"train_file={data}")) == 0
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")  # same records, reordered
    capsys.readouterr()
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert f"train_file={data} is not the file the run started with" in err
    assert not (out / "ckpt-000003").exists()
    shutil.copy(env / "train.jsonl", data)  # the run's own data back: it resumes
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3"]) == 0


def test_a_checkpoint_changed_after_it_was_written_is_passed_over_saying_why(env, tmp_path, capsys):
    """Bytes of the newest checkpoint's weights changed (same size): resume says which file
    differs and takes the older checkpoint; with no good checkpoint left it is refused."""
    from giftlab.cli import main

    out = tmp_path / "run"
    assert main(_run(env, out)) == 0
    _overwrite_bytes(out / "ckpt-000002" / "model.safetensors")
    capsys.readouterr()
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3"]) == 0
    said = capsys.readouterr().out
    assert "ckpt-000002 does not load" in said and "model.safetensors" in said
    assert "its content changed after giftlab wrote it" in said
    assert "resumed from" in said and "ckpt-000001 at step 1" in said


def test_a_model_folder_changed_after_giftlab_wrote_it_is_refused_when_loaded(
    env, tmp_path, capsys
):
    """final/ is read back by the pipeline (GRPO starts from it) and by giftlab eval."""
    from giftlab.cli import main
    from giftlab.models import load_model

    out = tmp_path / "run"
    assert main(_run(env, out, "save_final=true")) == 0
    load_model(str(out / "final"))  # as written, it loads
    with (out / "final" / "README.md").open("a") as f:  # the card is the user's to edit
        f.write("\nMy notes on this model.\n")
    load_model(str(out / "final"))
    _overwrite_bytes(out / "final" / "model.safetensors")
    with pytest.raises(InputError, match=r"final/model.safetensors: its content changed"):
        load_model(str(out / "final"))


def test_a_cache_manifest_that_is_not_json_is_named_by_train_and_gift_trainer(
    env, tmp_path, capsys
):
    """Before: a traceback in `train ref_cache=` and GIFTTrainer (ref-cache's own is in
    test_folder_ownership)."""
    from giftlab.cli import main
    from giftlab.engine.cache import RefCacheError

    cache = tmp_path / "cache"
    assert main(_cache_args(env, cache)) == 0
    (cache / "manifest.json").write_text("{not json")
    capsys.readouterr()
    assert main(_train_from(env, cache, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert f"{cache / 'manifest.json'} is not JSON" in err and "Traceback" not in err
    from tests.integrations.test_trl import _trainer

    with pytest.raises(RefCacheError, match=r"manifest.json is not JSON"):
        _trainer(env / "model", tmp_path / "t", ref_cache=str(cache))
