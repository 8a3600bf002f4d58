"""The run folder loses nothing: reuse, concurrency, rotation, resume fallbacks, torn metrics,
temporary folders, non-finite weights, a full disk, and checkpoints other tools can read."""

import errno
import json

import pytest
import torch

from giftlab.cli import main
from giftlab.errors import InputError, NonFiniteError, RunDirError
from giftlab.runtime import RunDir, read_checkpoint, read_metrics
from giftlab.train import train
from tests.helpers import save_tiny_model, train_config, write_jsonl


def _cfg(tmp_path, train_file, **kw):
    return train_config(tmp_path, train_file, **({"save_every": 1, "keep_checkpoints": 10} | kw))


def _metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_second_run_into_a_used_folder_is_refused_and_overwrite_replaces_it(
    tmp_path, data_files, model_factory, tok
):
    train(_cfg(tmp_path, data_files[0]), model=model_factory(), tokenizer=tok)
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match="already holds a run"):
        train(_cfg(tmp_path, data_files[0], max_steps=2), model=model_factory(), tokenizer=tok)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before  # untouched
    train(
        _cfg(tmp_path, data_files[0], max_steps=2, overwrite=True),
        model=model_factory(),
        tokenizer=tok,
    )
    assert [r["step"] for r in _metrics(tmp_path / "run")] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "run").glob("ckpt-*")) == [
        "ckpt-000001",
        "ckpt-000002",
    ]


def test_overwrite_refuses_a_folder_giftlab_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with (
        pytest.raises(RunDirError, match="did not write"),
        RunDir(tmp_path / "mine", overwrite=True),
    ):
        pass
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_a_concurrent_run_fails_at_once(tmp_path):
    with RunDir(tmp_path / "run"):
        with pytest.raises(RunDirError, match=r"in use by another giftlab command \(pid \d+\)"):
            with RunDir(tmp_path / "run", resume=True):
                pass
    with RunDir(tmp_path / "run", resume=True):  # released on exit
        pass


class _Tiny(torch.nn.Module):
    def __init__(self, value=1.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((2,), value))

    def save_pretrained(self, folder, state_dict=None):
        from safetensors.torch import save_file

        save_file(state_dict or {"w": self.w.detach()}, str(folder / "model.safetensors"))


def test_rotation_keeps_the_newest_by_step_number_not_by_name(tmp_path):
    with RunDir(tmp_path / "run") as run:
        for step in (999_998, 999_999, 1_000_000, 1_000_001):
            run.save_checkpoint(step, _Tiny(), None, {"step": step}, keep=2)
        assert [s for s, _ in run.checkpoints()] == [1_000_000, 1_000_001]
        assert (tmp_path / "run" / "latest").read_text().strip() == "ckpt-1000001"


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    with RunDir(tmp_path / "run") as run:
        good = run.save_checkpoint(1, _Tiny(), None, {"step": 1}, keep=5)
        with pytest.raises(NonFiniteError, match=f"Last good checkpoint: {good}"):
            run.save_checkpoint(2, _Tiny(float("nan")), None, {"step": 2}, keep=5)
    assert [p.name for p in sorted((tmp_path / "run").glob("ckpt-*"))] == ["ckpt-000001"]


def test_trainer_stops_at_the_step_that_made_weights_non_finite(
    tmp_path, data_files, model_factory, tok, monkeypatch
):
    """Defect: lr=inf save_every=1 saved a checkpoint of NaN weights; resume then failed."""
    import giftlab.train.loop as loop

    class PoisonAtStep2(torch.optim.AdamW):
        calls = 0

        def step(self, closure=None):
            super().step(closure)
            PoisonAtStep2.calls += 1
            if PoisonAtStep2.calls == 2:
                with torch.no_grad():
                    self.param_groups[0]["params"][0].fill_(float("inf"))

    monkeypatch.setattr(loop.torch.optim, "AdamW", PoisonAtStep2)
    with pytest.raises(NonFiniteError, match=r"step 2: the optimiser step .*ckpt-000001"):
        train(_cfg(tmp_path, data_files[0]), model=model_factory(), tokenizer=tok)
    assert [p.name for p in (tmp_path / "run").glob("ckpt-*")] == ["ckpt-000001"]
    weights, _ = read_checkpoint(tmp_path / "run" / "ckpt-000001")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_resume_tolerates_a_torn_last_line_and_removes_orphan_temporaries(
    tmp_path, data_files, model_factory, tok, capsys
):
    train(_cfg(tmp_path, data_files[0], max_steps=2), model=model_factory(), tokenizer=tok)
    run = tmp_path / "run"
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "loss/tr')  # killed mid-write
    (run / "ckpt-000003.tmpx1y2").mkdir()  # killed mid-checkpoint
    train(
        _cfg(tmp_path, data_files[0], max_steps=3),
        resume=True,
        model=model_factory(),
        tokenizer=tok,
    )
    out = capsys.readouterr().out
    assert "metrics.jsonl:3: dropped a torn last line" in out
    assert "ckpt-000003.tmpx1y2 (left by an interrupted write)" in out
    assert not (run / "ckpt-000003.tmpx1y2").exists()
    assert [r["step"] for r in _metrics(run)] == [1, 2, 3]


def test_a_malformed_metrics_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(RunDirError, match=r"metrics.jsonl:2: malformed metrics line"):
        read_metrics(path)


def test_resume_without_a_checkpoint_keeps_the_old_metrics(
    tmp_path, data_files, model_factory, tok
):
    """Defect: --resume with no valid checkpoint started from scratch and wiped metrics.jsonl."""
    train(
        _cfg(tmp_path, data_files[0], max_steps=2, save_every=0),
        model=model_factory(),
        tokenizer=tok,
    )
    import shutil

    for ckpt in (tmp_path / "run").glob("ckpt-*"):
        shutil.rmtree(ckpt)
    old = (tmp_path / "run" / "metrics.jsonl").read_text()
    train(
        _cfg(tmp_path, data_files[0], max_steps=1),
        resume=True,
        model=model_factory(),
        tokenizer=tok,
    )
    assert (tmp_path / "run" / "metrics-abandoned.jsonl").read_text() == old
    assert [r["step"] for r in _metrics(tmp_path / "run")] == [1]


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_half_checkpoint(
    tmp_path, monkeypatch, capsys
):
    tok_dir, data = _tiny_model_folder(tmp_path)
    import giftlab.runtime.rundir as rundir

    real_save, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(rundir.torch, "save", save)
    code = main(
        [
            "train",
            f"model={tok_dir}",
            f"train_file={data}",
            "val_file=",
            "max_steps=3",
            "save_every=1",
            "batch_size=2",
            "progress=false",
            "diag_every=0",
            f"out_dir={tmp_path / 'run'}",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert "ckpt-000002 failed: the disk is full" in err and "ckpt-000001" in err
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert "ckpt-000001" in names and not any(".tmp" in n for n in names)
    assert (tmp_path / "run" / "latest").read_text().strip() == "ckpt-000001"


def _tiny_model_folder(tmp_path):
    save_tiny_model(tmp_path / "model")
    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(4) for b in range(4)]
    return tmp_path / "model", write_jsonl(tmp_path / "train.jsonl", rows)


def test_every_checkpoint_loads_with_from_pretrained(tmp_path, data_files, model_factory, tok):
    from transformers import AutoModelForCausalLM

    model = model_factory()
    train(_cfg(tmp_path, data_files[0], max_steps=2), model=model, tokenizer=tok)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "ckpt-000002")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    _, state = read_checkpoint(tmp_path / "run" / "ckpt-000002")  # weights_only=True inside
    assert state["step"] == 2 and "optimizer" in state


def test_lora_resume_reproduces_the_uninterrupted_run(tmp_path, data_files, model_factory, tok):
    kw = dict(lora_rank=4, max_steps=4, save_every=2)
    full = model_factory()
    train(_cfg(tmp_path / "a", data_files[0], **kw), model=full, tokenizer=tok)
    train(
        _cfg(tmp_path / "b", data_files[0], **(kw | {"max_steps": 2})),
        model=model_factory(),
        tokenizer=tok,
    )
    resumed = model_factory()
    train(_cfg(tmp_path / "b", data_files[0], **kw), resume=True, model=resumed, tokenizer=tok)

    def strip(rows):
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]

    assert strip(_metrics(tmp_path / "b" / "run")) == strip(_metrics(tmp_path / "a" / "run"))


def test_rl_stops_on_a_verifier_that_returns_nan(tmp_path):
    from giftlab.models import tiny_llama, tiny_tokenizer
    from giftlab.rl.loop import RLConfig, rl

    tok = tiny_tokenizer()
    rows = [
        {"prompt": f"say {i}", "task": "toy", "index": i, "seed": 0, "config": {}} for i in range(4)
    ]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    cfg = RLConfig(
        train_file=str(data),
        out_dir=str(tmp_path / "rl"),
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=2,
        max_steps=2,
        progress=False,
        save_final=False,
    )
    from giftlab.data.verifiers import VerifierError

    with pytest.raises(
        VerifierError, match=r"step 1: the verifier failed on 4 of 4 .*p.jsonl:\d: .*returned nan"
    ):
        rl(
            cfg,
            model=tiny_llama(len(tok)),
            tokenizer=tok,
            ref_model=tiny_llama(len(tok)),
            score_fn=lambda record, completion: float("nan"),
        )


def test_report_to_tensorboard_writes_event_files_from_both_loops(
    tmp_path, data_files, model_factory, tok
):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from giftlab.models import tiny_llama
    from giftlab.rl.loop import RLConfig, rl

    train(
        _cfg(tmp_path, data_files[0], max_steps=2, report_to="tensorboard"),
        model=model_factory(),
        tokenizer=tok,
    )
    rows = [
        {"prompt": f"say {i}", "task": "toy", "index": i, "seed": 0, "config": {}} for i in range(4)
    ]
    rl_cfg = RLConfig(
        train_file=str(write_jsonl(tmp_path / "p.jsonl", rows)),
        out_dir=str(tmp_path / "rl"),
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=2,
        max_steps=2,
        progress=False,
        save_final=False,
        report_to="tensorboard",
    )
    rl(
        rl_cfg,
        model=tiny_llama(len(tok)),
        tokenizer=tok,
        ref_model=tiny_llama(len(tok)),
        score_fn=lambda record, completion: 0.5,
    )
    for run, key in ((tmp_path / "run", "loss/train"), (tmp_path / "rl", "rl/reward_mean")):
        events = list((run / "tb").rglob("events.out.tfevents*"))
        assert events, run
        acc = EventAccumulator(str(events[0].parent))
        acc.Reload()
        assert [e.step for e in acc.Scalars(key)] == [1, 2], run
    # the tracker's folder is in the run's inventory: the run resumes (and overwrite may remove it)
    assert "tb" in json.loads((tmp_path / "run" / ".giftlab-run").read_text())["wrote"]
    more = _cfg(tmp_path, data_files[0], max_steps=3, report_to="tensorboard")
    train(more, model=model_factory(), tokenizer=tok, resume=True)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_loses_nothing(tmp_path):
    """A real `kill -9` of `giftlab train` at a random point, then --resume: the metrics and the
    final weights equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    model, data = _tiny_model_folder(tmp_path)
    common = [
        sys.executable,
        "-m",
        "giftlab.cli",
        "train",
        f"model={model}",
        f"train_file={data}",
        "val_file=",
        "max_steps=150",
        "save_every=7",
        "batch_size=2",
        "progress=false",
        "diag_every=0",
        "lr=1e-3",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [*common, f"out_dir={tmp_path / 'full'}"], check=True, env=env, capture_output=True
    )
    proc = subprocess.Popen(
        [*common, f"out_dir={tmp_path / 'cut'}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 40:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(
        [*common, f"out_dir={tmp_path / 'cut'}", "--resume"],
        check=True,
        env=env,
        capture_output=True,
    )

    def losses(run):
        return [(r["step"], r["loss/train"]) for r in _metrics(tmp_path / run)]

    assert losses("cut") == losses("full")
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "final" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)


def test_a_refused_claim_writes_nothing_and_following_its_advice_deletes_nothing(
    tmp_path, data_files, model_factory, tok
):
    """The user's own folder as out_dir: refused without a trace, never told to overwrite, and
    overwrite=true deletes nothing of theirs (before: the refusal marked the folder as a run and
    the advised overwrite=true removed thesis.tex and figs/)."""
    mine = tmp_path / "run"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    (mine / "figs").mkdir()
    (mine / "figs" / "a.png").write_bytes(b"png")
    before = sorted(p.name for p in mine.iterdir())
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match=r"giftlab did not write \(e.g. .figs.\)") as err:
            train(
                _cfg(tmp_path, data_files[0], overwrite=overwrite),
                model=model_factory(),
                tokenizer=tok,
            )
        assert "overwrite=true" not in str(err.value)  # no advice that would destroy files
        assert sorted(p.name for p in mine.iterdir()) == before  # not even a marker or lock
    assert (mine / "thesis.tex").read_text() == "precious"


def test_overwrite_removes_only_a_runs_own_layout(tmp_path, data_files, model_factory, tok):
    train(_cfg(tmp_path, data_files[0]), model=model_factory(), tokenizer=tok)
    (tmp_path / "run" / "notes.txt").write_text("mine")  # the user adds a file to the run
    with pytest.raises(RunDirError, match="giftlab did not write .*notes.txt"):
        train(_cfg(tmp_path, data_files[0], overwrite=True), model=model_factory(), tokenizer=tok)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "run" / "metrics.jsonl").exists()  # and the run is untouched


def test_a_corrected_rerun_after_a_failed_start_is_not_refused(
    tmp_path, data_files, model_factory, tok
):
    """A run that failed after its claim but before its first step (here: every example over
    max_length) leaves nothing to lose; the corrected command just works."""
    with pytest.raises(InputError, match="every example was skipped"):
        train(_cfg(tmp_path, data_files[0], max_length=2), model=model_factory(), tokenizer=tok)
    train(_cfg(tmp_path, data_files[0], max_steps=2), model=model_factory(), tokenizer=tok)
    assert [r["step"] for r in _metrics(tmp_path / "run")] == [1, 2]


def test_resume_applies_mutable_keys_records_them_and_refuses_the_rest(
    tmp_path, data_files, model_factory, tok
):
    train(_cfg(tmp_path, data_files[0], max_steps=2), model=model_factory(), tokenizer=tok)
    config_before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(RunDirError, match=r"other settings \(lr 0.01 -> 0.5\)"):
        train(
            _cfg(tmp_path, data_files[0], max_steps=4, lr=0.5),
            resume=True,
            model=model_factory(),
            tokenizer=tok,
        )
    assert (tmp_path / "run" / "config.json").read_text() == config_before  # record unchanged
    train(
        _cfg(tmp_path, data_files[0], max_steps=4, log_every=2),
        resume=True,
        model=model_factory(),
        tokenizer=tok,
    )
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["config"]["max_steps"] == 4 and info["config"]["lr"] == 0.01
    (entry,) = info["history"]
    assert entry["resumed_at"] == 2
    assert entry["changed"] == {"max_steps": [2, 4], "log_every": [1, 2]}
    assert [r["step"] for r in _metrics(tmp_path / "run")] == [1, 2, 4]
