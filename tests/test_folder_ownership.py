"""Issue 27, the folders giftlab writes: a folder is giftlab's by its contents (the run marker,
or a config.json / results.json in giftlab's own form), never by the names of its entries. A
user's folder whose entries happen to carry a run's names (mlruns/, config.json, data/,
report.md) is refused, unchanged, and the refusal never advises an overwrite=true that would
delete them. A run copied without its dot-files, or a folder seeded with a run's results,
is still giftlab's."""

import json

import pytest

from giftlab.cli import main
from tests.helpers import exact_variant_module, tiny_pipeline_config
from tests.test_cli_errors import _train_args
from tests.test_cli_errors import env as env  # noqa: F401 - the shared fixture


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize(
    "entries",
    [
        {"mlruns/0/meta.yaml": "the user's experiments"},
        {"tb/events.out": "the user's tensorboard logs"},
        {"config.json": '{"lr": 3e-4, "note": "the user\'s own config"}'},
    ],
    ids=["mlruns", "tb", "config.json"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_train_into_a_user_folder_with_run_like_names_is_refused(
    env, tmp_path, capsys, entries, overwrite
):
    out = tmp_path / "exp"
    for name, text in entries.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _snapshot(out)
    extra = ["overwrite=true"] if overwrite else []
    assert main(["train", *_train_args(env), f"out_dir={out}", *extra]) == 2
    err = capsys.readouterr().err
    assert "holds files giftlab did not write" in err and "overwrite=true" not in err
    assert _snapshot(out) == before


@pytest.mark.parametrize(
    "entries",
    [
        {"data/my_train.jsonl": '{"prompt": "mine"}\n', "data/NOTES.md": "notes"},
        {"report.md": "# my write-up"},
    ],
    ids=["data", "report.md"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_pipeline_into_a_user_folder_is_refused_and_changes_nothing(tmp_path, entries, overwrite):
    from giftlab.errors import RunDirError
    from giftlab.pipeline import PipelineConfig, run_pipeline

    cfg = tiny_pipeline_config(tmp_path, seeds=[0], inits=["sft"], rl_steps=0, select="final")
    out = tmp_path / "p"
    for name, text in entries.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _snapshot(out)
    with pytest.raises(RunDirError, match="holds files giftlab did not write") as err:
        run_pipeline(PipelineConfig(**(cfg.to_dict() | {"overwrite": overwrite})))
    assert "overwrite=true" not in str(err.value)
    assert _snapshot(out) == before


def test_a_run_copied_without_its_marker_or_seeded_with_results_is_still_giftlab_s(env, tmp_path):
    """Identity by contents: a run copied without dot-files resumes; a folder holding only a
    pipeline's results.json (how the campaign seeds its work folder) is the pipeline's."""
    import shutil

    from giftlab.pipeline import PipelineLayout
    from giftlab.runtime import RunDir
    from giftlab.runtime.rundir import MARKER

    out = tmp_path / "run"
    assert main(["train", *_train_args(env), f"out_dir={out}", "max_steps=1"]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".*"))
    assert not (copy / MARKER).exists()
    assert main(["train", *_train_args(env), "--resume", f"out_dir={copy}", "max_steps=2"]) == 0
    seeded = tmp_path / "seeded"
    seeded.mkdir()
    results = {"results": [], "config": {}, "provenance": {"code_version": "x"}}
    (seeded / "results.json").write_text(json.dumps(results))
    RunDir(seeded, resume=True, layout=PipelineLayout(seeded)).preflight()  # not refused
    (seeded / "results.json").write_text('{"results": []}')  # not giftlab's form: the user's
    with pytest.raises(Exception, match="holds files giftlab did not write"):
        RunDir(seeded, resume=True, layout=PipelineLayout(seeded)).preflight()


def test_data_never_replaces_a_user_s_file_and_replaces_its_own(tmp_path, capsys):
    out = tmp_path / "mydata"
    out.mkdir()
    (out / "train.jsonl").write_text('{"prompt": "my own data", "response": "42"}\n')
    before = _snapshot(out)
    argv = ["data", "--out", str(out), "--n-train", "4", "--n-val", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds train.jsonl, which giftlab did not write" in err
    assert _snapshot(out) == before
    fresh = tmp_path / "fresh"
    assert main(["data", "--out", str(fresh), "--n-train", "4", "--n-val", "2"]) == 0
    assert main(["data", "--out", str(fresh), "--n-train", "6", "--n-val", "2"]) == 0  # its own
    assert len((fresh / "train.jsonl").read_text().splitlines()) == 6


def test_the_committed_task_data_is_giftlab_s_by_its_contents():
    from pathlib import Path

    from giftlab.data.tasks import is_task_data

    root = Path(__file__).resolve().parents[1] / "data" / "countdown"
    assert is_task_data(root / "train.jsonl") and is_task_data(root / "val.jsonl")


def test_validate_never_replaces_a_user_s_report(tmp_path, monkeypatch, capsys):
    spec = exact_variant_module(tmp_path, monkeypatch, "ownership_targets")
    work = tmp_path / "mywork"
    work.mkdir()
    (work / "validate.csv").write_text("my,own,table\n")
    before = _snapshot(work)
    argv = ["validate", spec, "--seeds", "1", "--search", "0", "--out", str(work)]
    assert main(argv) == 2
    assert "holds validate.csv, which giftlab did not write" in capsys.readouterr().err
    assert _snapshot(work) == before
    argv[-1] = str(tmp_path / "v")
    assert main(argv) == 0 and main(argv) == 0  # a rerun replaces its own files


def test_demo_never_replaces_a_user_s_report(tmp_path, capsys):
    out = tmp_path / "mydemo"
    out.mkdir()
    (out / "report.md").write_text("# my report\n")
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "holds report.md, which giftlab did not write" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "# my report\n"


def _cache_args(env, out, *extra):
    return [
        "ref-cache",
        f"model={env / 'model'}",
        f"train_file={env / 'train.jsonl'}",
        "val_file=",
        "top_k=4",
        f"out_dir={out}",
        *extra,
    ]


def test_ref_cache_into_a_user_dataset_with_a_manifest_is_refused_unchanged(env, tmp_path, capsys):
    """An image data set (manifest.json, train/, val/): not a cache by its contents; neither the
    refusal nor overwrite=true touches it, and no refusal advises overwrite."""
    out = tmp_path / "dataset"
    for split in ("train", "val"):
        (out / split).mkdir(parents=True)
        (out / split / "img001.png").write_bytes(b"\\x89PNG...")
    (out / "manifest.json").write_text('{"images": 2, "version": 3}')
    before = _snapshot(out)
    for extra in ([], ["overwrite=true"]):
        assert main(_cache_args(env, out, *extra)) == 2
        err = capsys.readouterr().err
        assert "not a reference cache" in err and "overwrite=true" not in err
        assert _snapshot(out) == before
    (out / "manifest.json").write_text("{not json")
    assert main(_cache_args(env, out)) == 2
    assert "manifest.json is not JSON" in capsys.readouterr().err


def test_ref_cache_overwrite_removes_only_the_cache_s_shards(env, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(_cache_args(env, out)) == 0
    (out / "train" / "my_notes.txt").write_text("mine")
    assert main(_cache_args(env, out, "top_k=8", "overwrite=true")) == 2
    err = capsys.readouterr().err
    assert "train/my_notes.txt" in err and "overwrite=true" not in err
    assert (out / "train" / "my_notes.txt").read_text() == "mine"
    (out / "train" / "my_notes.txt").unlink()
    assert main(_cache_args(env, out, "top_k=8", "overwrite=true")) == 0


def test_eval_on_a_full_disk_names_the_path_and_loses_no_result(env, tmp_path, capsys, monkeypatch):
    """Before: the whole evaluation ran, then '[Errno 28]' with no path, nothing printed. Now the
    completions stream says once that it cannot write and the evaluation goes on; the results
    are printed, then the failed write is named (exit 2)."""
    import errno
    import io

    from tests.test_cli_errors import _eval

    full = OSError(errno.ENOSPC, "No space left on device")

    class Full(io.StringIO):
        def write(self, text):
            raise full

    real_open = open

    def opener(path, mode="r", *a, **k):
        if "w" in str(mode) and str(path).endswith(".completions.jsonl"):
            return Full()
        return real_open(path, mode, *a, **k)

    def no_space(self, *a, **k):
        raise full

    monkeypatch.setattr("builtins.open", opener)
    monkeypatch.setattr("pathlib.Path.write_text", no_space)
    out = tmp_path / "small" / "e.json"
    assert main(_eval(f"out={out}")(env)) == 2
    captured = capsys.readouterr()
    assert f"cannot write {out.with_name('e.completions.jsonl')}" in captured.err
    assert f"writing {out} failed: the disk is full; the results are printed above" in captured.err
    printed = json.loads(captured.out.strip().splitlines()[-1])
    assert printed["n_problems"] == 1 and "pass_at_k" in printed
    assert not out.exists()


def test_a_lora_model_s_reference_fingerprint_is_its_base_s_whatever_the_adapters():
    """Before: GIFTTrainer with LoRA refused its own cache when the seed or the rank changed
    (the adapters' weights were hashed as the reference's)."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    from giftlab.engine.cache import weights_hash
    from giftlab.models import tiny_llama

    base = tiny_llama(64, seed=0)
    plain = weights_hash(base)
    hashes = set()
    for seed, rank in ((0, 4), (1, 4), (0, 8)):
        torch.manual_seed(seed)
        peft = get_peft_model(copy.deepcopy(base), LoraConfig(r=rank, target_modules="all-linear"))
        with torch.no_grad():  # trained adapters, not PEFT's zero-initialised B
            for n, p in peft.named_parameters():
                if "lora_B" in n:
                    p.normal_()
        hashes.add(weights_hash(peft.get_base_model()))
    assert hashes == {plain}
    other = tiny_llama(64, seed=1)
    assert weights_hash(other) != plain  # another base is still another reference


def test_a_run_killed_while_writing_final_is_finished_by_resume(env, tmp_path, capsys):
    """Before: its last checkpoint is at max_steps, so --resume said 'is finished' and final/
    could never be written. Now resume writes final/ and trains no further step."""
    out = tmp_path / "run"
    args = ["train", *_train_args(env), f"out_dir={out}", "save_every=1", "save_final=true"]
    assert main(args) == 0
    rows = (out / "metrics.jsonl").read_text()
    import shutil

    shutil.move(out / "final", out / "final.tmpkilled")  # as a kill during its write leaves it
    assert main([*args, "--resume"]) == 0
    assert (out / "final" / "config.json").exists() and not (out / "final.tmpkilled").exists()
    assert (out / "metrics.jsonl").read_text() == rows  # no step trained again
    assert main([*args, "--resume"]) == 2  # finished now: said so
    assert "is finished" in capsys.readouterr().err


def test_ref_cache_of_data_that_leaves_no_token_is_refused_before_the_folder(env, tmp_path, capsys):
    """Before: every example over max_length gave a 'complete' cache of 0 tokens, exit 0."""
    out = tmp_path / "cache"
    assert main(_cache_args(env, out, "max_length=4", "overlong=skip")) == 2
    err = capsys.readouterr().err
    assert "train.jsonl: no response token left to cache (max_length=4" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "name, extra", [("tb", []), ("final", ["save_final=false"])], ids=["tb", "final"]
)
def test_an_entry_the_user_added_to_a_run_folder_is_never_removed_by_overwrite(
    env, tmp_path, capsys, name, extra
):
    """The run marker's inventory, not the entry's name, says what giftlab wrote: a user's tb/
    (the run tracked nothing) or final/ (the run saved none) added beside a run is refused by
    overwrite=true, and kept (before: both matched a run's layout and were deleted)."""
    out = tmp_path / "run"
    args = ["train", *_train_args(env), f"out_dir={out}", *extra]
    assert main(args) == 0
    (out / name).mkdir()
    (out / name / "mine.txt").write_text("the user's")
    assert main([*args, "overwrite=true"]) == 2
    err = capsys.readouterr().err
    assert f"holds files giftlab did not write (e.g. '{name}')" in err
    assert (out / name / "mine.txt").read_text() == "the user's"
    (out / name / "mine.txt").unlink()
    (out / name).rmdir()
    assert main([*args, "overwrite=true"]) == 0


def test_a_run_of_an_older_giftlab_without_an_inventory_resumes_and_gets_one(env, tmp_path):
    out = tmp_path / "run"
    args = ["train", *_train_args(env), f"out_dir={out}", "save_every=1"]
    assert main(args) == 0
    (out / ".giftlab-run").write_text("giftlab run folder\n")  # the marker before inventories
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3"]) == 0
    wrote = set(json.loads((out / ".giftlab-run").read_text())["wrote"])
    assert {"config.json", "metrics.jsonl", "latest", "ckpt-000003"} <= wrote


def test_a_run_moved_or_named_another_way_resumes(env, tmp_path, monkeypatch):
    """Before: 'out_dir changed' for a run moved to another folder or named ./runs/r instead of
    runs/r: a run is its folder's contents, not its path (the change is kept in the history)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    assert main(["train", *_train_args(env), "out_dir=runs/r", "save_every=1"]) == 0
    assert main(["train", "out_dir=./runs/r", "--resume", "max_steps=3"]) == 0
    shutil.move(tmp_path / "runs" / "r", tmp_path / "elsewhere")
    assert main(["train", f"out_dir={tmp_path / 'elsewhere'}", "--resume", "max_steps=4"]) == 0
    history = json.loads((tmp_path / "elsewhere" / "config.json").read_text())["history"]
    assert [h["changed"].get("out_dir") for h in history] == [
        ["runs/r", "./runs/r"],
        ["./runs/r", str(tmp_path / "elsewhere")],
    ]


def test_eval_never_replaces_a_user_s_file_and_replaces_its_own(env, tmp_path, capsys):
    """Before: `giftlab eval out=notes.json` replaced the user's file (and its
    notes.completions.jsonl) after the whole evaluation."""
    from tests.test_cli_errors import _eval

    for name in ("notes.json", "notes.completions.jsonl"):
        folder = tmp_path / name.split(".")[1]
        folder.mkdir()
        (folder / name).write_text('{"my": "notes"}\n')
        out = folder / "notes.json"
        assert main(_eval(f"out={out}")(env)) == 2
        assert f"{folder / name} exists and giftlab did not write it" in capsys.readouterr().err
        assert (folder / name).read_text() == '{"my": "notes"}\n'
    out = tmp_path / "mine" / "e.json"
    assert main(_eval(f"out={out}")(env)) == 0
    assert main(_eval(f"out={out}")(env)) == 0  # its own results and completions: replaced
