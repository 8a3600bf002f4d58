"""giftlab push: a run folder's final/ is checked (loadable, a card, no local path) and listed
offline with --dry-run; what would leak a path of this machine is refused, naming the file."""

import json

from giftlab.cli import main
from tests.test_cli_errors import _train_args
from tests.test_cli_errors import env as env  # noqa: F401 - the shared fixture


def _run(env, tmp_path, name="run", *extra):
    out = tmp_path / name
    argv = ["train", *_train_args(env), "save_final=true", f"out_dir={out}", *extra]
    assert main(argv) == 0
    return out


def test_a_dry_run_checks_and_lists_the_final_folder(env, tmp_path, capsys):
    out = _run(env, tmp_path)
    capsys.readouterr()
    assert main(["push", str(out), "me/my-gift-model", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'final'} -> https://huggingface.co/me/my-gift-model" in printed
    for name in ("README.md", "config.json", "model.safetensors"):
        assert name in printed
    assert "nothing was uploaded" in printed
    # the card names the base by its folder's name, no local path anywhere in final/
    card = (out / "final" / "README.md").read_text()
    assert str(tmp_path) not in card and str(env) not in card


def test_what_would_publish_a_local_path_is_refused(env, tmp_path, capsys):
    out = _run(env, tmp_path)
    config = json.loads((out / "final" / "config.json").read_text())
    config["note"] = f"trained from {tmp_path}/secret"
    (out / "final" / "config.json").write_text(json.dumps(config))
    for argv, message in (
        (["push", str(out), "me/x", "--dry-run"], "config.json holds"),
        (["push", str(out), "not-a-repo-id", "--dry-run"], "owner/name"),
        (["push", str(tmp_path / "nothing"), "me/x", "--dry-run"], "no such folder"),
        (["push", str(env / "no_weights"), "me/x", "--dry-run"], "no weights"),
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


def test_a_real_push_offline_is_one_line(env, tmp_path, capsys, monkeypatch):
    out = _run(env, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    capsys.readouterr()
    assert main(["push", str(out), "me/my-gift-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HF_HUB_OFFLINE" in err[0]


def test_checkpoints_can_keep_weights_only_in_bf16(env, tmp_path):
    """save_optimizer=false and save_dtype=bfloat16: a checkpoint of bf16 weights without the
    optimiser state (smaller), final/ in bf16, and --resume still runs (a fresh optimiser)."""
    import torch
    from safetensors.torch import load_file

    full = _run(env, tmp_path, "full", "save_every=1", "max_steps=1")
    lean = _run(
        env,
        tmp_path,
        "lean",
        "save_every=1",
        "max_steps=1",
        "save_optimizer=false",
        "save_dtype=bfloat16",
    )

    def size(folder):
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    ck_full, ck_lean = full / "ckpt-000001", lean / "ckpt-000001"
    assert size(ck_lean) < 0.5 * size(ck_full)
    w = load_file(ck_lean / "model.safetensors")
    assert all(t.dtype == torch.bfloat16 for t in w.values() if t.is_floating_point())
    w = load_file(lean / "final" / "model.safetensors")
    assert all(t.dtype == torch.bfloat16 for t in w.values() if t.is_floating_point())
    state = torch.load(ck_lean / "trainer_state.pt", weights_only=True)
    assert state["optimizer"] is None
    argv = ["train", *_train_args(env), "save_final=true", f"out_dir={lean}", "max_steps=2"]
    assert main([*argv, "save_optimizer=false", "save_dtype=bfloat16", "--resume"]) == 0
