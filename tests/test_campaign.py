"""scripts/campaign.py's `gpu` mode (`make gpu-campaign`), on the CPU with a tiny model: both
stages run with every training seed, their results land in the output folder (never in the
committed CPU folders), and the minutes of each stage and the total are printed."""

import importlib.util
import json
from pathlib import Path

import pytest

from tests.helpers import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]


def _campaign():
    spec = importlib.util.spec_from_file_location(
        "campaign_script", ROOT / "scripts" / "campaign.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_campaign_runs_both_stages_with_every_seed_and_says_the_minutes(tmp_path, capsys):
    save_tiny_model(tmp_path / "tiny")
    tiny = [
        f"model={tmp_path / 'tiny'}",
        "prompt_style=short",  # the tiny tokenizer spells a few-shot prompt past max_length
        "n_train=8",
        "n_val=2",
        "sft_steps=2",
        "sft_batch=2",
        "select=final",
        "rl_steps=2",
        "rl_prompts=2",
        "group_size=2",
        "eval_samples=2",
        "max_new_tokens=4",
    ]
    committed = {p: p.stat().st_mtime_ns for p in (ROOT / "paper_figures").rglob("results.json")}
    argv = ["gpu", "--seeds", "2", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]
    assert _campaign().main([*argv, *tiny]) == 0
    out = capsys.readouterr().out
    for stage, folder, inits in (
        ("fewshot", "real_sft_sweep_fewshot", {"base", "kd_base", "gift:5", "gift:10", "sft"}),
        ("rl", "pipeline_fewshot", {"base", "sft", "gift:10"}),
    ):
        results = json.loads((tmp_path / "o" / folder / "results.json").read_text())["results"]
        assert {r["init"] for r in results} == inits
        assert {r["seed"] for r in results if r["init"] != "base"} == {0, 1}
        assert f"[campaign gpu] {stage}: " in out
    assert "[campaign gpu] total: " in out and "for 2 seeds" in out
    stages = {
        r["stage"]
        for r in json.loads((tmp_path / "o" / "pipeline_fewshot" / "results.json").read_text())[
            "results"
        ]
    }
    assert stages == {"before RL", "after RL"}
    assert committed == {
        p: p.stat().st_mtime_ns for p in (ROOT / "paper_figures").rglob("results.json")
    }  # the committed CPU results are untouched


def test_a_campaign_of_no_seeds_is_refused_not_a_silent_success(capsys):
    with pytest.raises(SystemExit) as stop:
        _campaign().main(["rl", "--seeds", "0"])
    assert stop.value.code == 2
    assert "--seeds 0: the training seeds to reach, >= 1" in capsys.readouterr().err
