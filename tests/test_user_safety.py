"""What a user does off the happy path: valid inputs that used to be refused, outputs made before
the work, quick figures that never replace full ones, a pipeline resumed and extended, GRPO on
records its verifier cannot score."""

import json

import pytest

from giftlab.cli import main
from tests.helpers import tiny_pipeline_config
from tests.test_cli_errors import _eval, _jsonl, _rl, _train_args
from tests.test_cli_errors import env as env  # noqa: F401 - the shared fixture


def test_yaml_booleans_as_numbers_and_overrides_on_both_sides_are_accepted(env, tmp_path):
    """Refused before: `save_final: 1` in YAML (the command line took save_final=1), and
    KEY=VALUE after --resume or --config."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("save_final: 1\nmax_steps: 1\n")
    out = tmp_path / "run"
    args = [a for a in _train_args(env) if not a.startswith(("save_final", "max_steps"))]
    assert main(["train", "--config", str(cfg), *args, f"out_dir={out}"]) == 0
    assert (out / "final" / "config.json").exists()
    assert main(["train", *args[:3], "--resume", *args[3:], f"out_dir={out}", "max_steps=2"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["max_steps"] == 2 and info["history"][0]["changed"] == {
        "max_steps": [1, 2]
    }


def test_eval_out_into_a_missing_folder_is_made_before_the_work(env, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "eval.json"
    assert main([*_eval(f"out={out}")(env)]) == 0
    assert json.loads(out.read_text())["n_problems"] == 1


def test_quick_figures_never_replace_full_size_ones(tmp_path, capsys):
    full = tmp_path / "paper"
    full.mkdir()
    (full / "fig1_gate.png").write_bytes(b"the committed full-size figure")
    (full / "fig1_gate.csv").write_text("# code_version: abc\nbeta,gate\n")  # giftlab's
    assert main(["figures", "--quick", "--out", str(full)]) == 2
    assert "would replace the full-size figures" in capsys.readouterr().err
    assert (full / "fig1_gate.png").read_bytes() == b"the committed full-size figure"
    assert main(["demo", "--quick", "--out", str(full)]) == 2


def test_the_committed_figures_are_marked_full_size():
    from pathlib import Path

    from giftlab.figures import SIZE_MARKER

    root = Path(__file__).resolve().parents[1] / "paper_figures"
    assert (root / SIZE_MARKER).read_text().strip() == "full"


def test_grpo_on_records_its_verifier_cannot_score_exits_2_and_says_so(env, tmp_path, capsys):
    """Before: exit 0 and reward 0, only metrics.jsonl knew."""
    from giftlab.data.verifiers import register_verifier

    def cannot_score(record, completion):
        raise RuntimeError("the grader's service is down")

    register_verifier("unscorable", cannot_score)
    data = _jsonl(
        tmp_path / "u.jsonl", [{"task": "unscorable", "prompt": f"q{i}"} for i in range(4)]
    )
    argv = _rl(f"train_file={data}", f"out_dir={tmp_path / 'rl'}")(env)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the verifier failed on 4 of 4 completions" in err
    assert (
        "u.jsonl:1: the 'unscorable' verifier raised RuntimeError: the grader's service is down"
        in err
    )
    assert not (tmp_path / "rl" / "final").exists()


@pytest.mark.slow
def test_a_pipeline_resumes_keeps_its_cells_and_appends_seeds(tmp_path):
    from giftlab.pipeline import PipelineConfig, run_pipeline

    common = tiny_pipeline_config(tmp_path, inits=["sft"], select="final").to_dict()
    common.pop("seeds")
    quiet = lambda *a: None  # noqa: E731
    run_pipeline(PipelineConfig(seeds=[0], **common), log=quiet)
    first = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    stamp = (tmp_path / "p" / "sft-seed0" / "rl" / "final" / "config.json").stat().st_mtime_ns
    # a changed setting is refused; more seeds are appended, seed 0 is not run again
    with pytest.raises(ValueError, match=r"other settings \(rl_steps 2 -> 3\)"):
        run_pipeline(PipelineConfig(seeds=[0, 1], **(common | {"rl_steps": 3})), resume=True)
    logs = []
    run_pipeline(PipelineConfig(seeds=[0, 1], **common), log=logs.append, resume=True)
    rows = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    assert rows[: len(first)] == first  # kept as they were
    assert sorted((r["init"], r["seed"], r["stage"]) for r in rows[len(first) :]) == [
        ("sft", 1, "after RL"),
        ("sft", 1, "before RL"),
    ]
    assert any("[sft seed 0] kept" in str(x) for x in logs)
    assert (
        tmp_path / "p" / "sft-seed0" / "rl" / "final" / "config.json"
    ).stat().st_mtime_ns == stamp
    assert "seeds [0, 1]" in (tmp_path / "p" / "report.md").read_text()
    # a stopped cell: seed 2's RL removed after its fine-tuning finished -> resumed from there
    run_pipeline(PipelineConfig(seeds=[0, 1, 2], **common), log=quiet, resume=True)
    import shutil

    shutil.rmtree(tmp_path / "p" / "sft-seed2" / "rl")
    data = json.loads((tmp_path / "p" / "results.json").read_text())
    data["results"] = [
        r for r in data["results"] if not (r["seed"] == 2 and r["stage"] == "after RL")
    ]
    from giftlab.integrity import IntegrityError, seal

    edited = json.dumps(data)  # results.json edited by hand: its seal no longer matches
    (tmp_path / "p" / "results.json").write_text(edited)
    with pytest.raises(IntegrityError, match=r"results.json was edited after giftlab wrote it"):
        run_pipeline(PipelineConfig(seeds=[0, 1, 2], **common), log=quiet, resume=True)
    # as giftlab wrote it when the cell stopped (sealed): resumed from there
    (tmp_path / "p" / "results.json").write_text(json.dumps(seal(data)))
    run_pipeline(PipelineConfig(seeds=[0, 1, 2], **common), log=quiet, resume=True)
    rows = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    assert sorted((r["seed"], r["stage"]) for r in rows if r["init"] == "sft") == [
        (s, st) for s in (0, 1, 2) for st in ("after RL", "before RL")
    ]


def test_a_pipeline_max_length_too_short_stops_before_training_and_the_rerun_is_not_refused(
    env, tmp_path, capsys
):
    from giftlab.pipeline import PipelineLayout
    from giftlab.runtime import RunDir

    out = tmp_path / "pipe"
    argv = ["pipeline", f"out_dir={out}", f"model={env / 'model'}", "n_train=4", "n_val=2"]
    assert main([*argv, "max_length=8"]) == 2
    err = capsys.readouterr().err
    assert "max_length=8: 4 of 4 training examples" in err and "raise max_length" in err
    assert not (out / "results.json").exists()  # nothing evaluated, nothing trained
    assert not any(out.glob("*-seed*"))
    RunDir(
        out, layout=PipelineLayout(out)
    ).preflight()  # the corrected command is not refused ("already holds a run")


def test_the_pipeline_caption_names_the_model_that_ran():
    from giftlab.pipeline import model_display

    assert model_display("smollm2").startswith("SmolLM2-135M-Instruct")
    assert model_display("/data/my-qwen") == "/data/my-qwen"


def test_figures_out_under_a_file_is_refused_before_any_figure_runs(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["figures", "--quick", "--out", str(tmp_path / "f" / "figs")]) == 2
    assert "cannot make the folder" in capsys.readouterr().err


def test_the_rl_summary_line_counts_tolerated_verifier_failures(env, tmp_path, capsys):
    from giftlab.data.verifiers import register_verifier

    calls = {"n": 0}

    def flaky(record, completion):  # fails on every other completion
        calls["n"] += 1
        if calls["n"] % 2:
            raise ValueError("flaky grader")
        return 1.0

    register_verifier("flaky", flaky)
    data = _jsonl(tmp_path / "f.jsonl", [{"task": "flaky", "prompt": f"q{i}"} for i in range(4)])
    argv = _rl(f"train_file={data}", f"out_dir={tmp_path / 'rl'}", "max_verifier_failures=0.5")
    assert main(argv(env)) == 0
    assert "verifier failures 2 (tolerated, advantage 0)" in capsys.readouterr().out


def test_resume_takes_the_runs_own_settings_and_only_what_is_given_again_changes(env, tmp_path):
    """A run trained with non-default settings resumes with `--resume max_steps=3` alone (before,
    every non-default setting had to be typed again or the run was refused)."""
    out = tmp_path / "run"
    assert main(["train", *_train_args(env), f"out_dir={out}", "save_every=1", "lr=0.002"]) == 0
    assert main(["train", f"out_dir={out}", "--resume", "max_steps=3"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["config"]["lr"] == 0.002 and info["config"]["max_steps"] == 3
    assert info["history"] == [{"resumed_at": 2, "changed": {"max_steps": [2, 3]}}]
    assert main(["train", f"out_dir={out}", "--resume", "lr=0.5", "max_steps=4"]) == 2
