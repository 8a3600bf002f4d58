"""giftlab plan: the planned row of the measured design reproduces the measured interval over
seeds and problems, the cost is the stated formula, more seeds resolve smaller differences, and
results with one training seed are refused naming the way out."""

import json

import numpy as np
import pytest

from giftlab.cli import main
from giftlab.planner import plan
from giftlab.stats import seed_problem_difference


def _results(seeds=(0, 1, 2), problems=40, n=8, seed=0):
    rng = np.random.default_rng(seed)
    hard = rng.uniform(0.02, 0.6, problems)
    rows = []
    for s in seeds:
        shift = rng.normal(0, 0.05)
        for init, bonus in (("sft", 0.0), ("gift:5", 0.05 + shift)):
            p = np.clip(hard + bonus, 0, 1)
            c = rng.binomial(n, p)
            rows.append(
                {
                    "init": init,
                    "seed": s,
                    "stage": "before RL",
                    "per_problem_correct": c.tolist(),
                    "per_problem_distinct_correct": (c > 0).astype(int).tolist(),
                }
            )
    config = {"eval_samples": n, "inits": ["gift:5", "sft"]}
    return {"config": config, "results": rows}


def test_the_measured_design_planned_again_gives_the_measured_interval():
    data = _results()
    rows = plan(data, metrics=("pass@1",), seeds=(3,), problems=(40,), samples=(8,))
    measured, planned = rows
    a = np.array([r["per_problem_correct"] for r in data["results"] if r["init"] == "gift:5"]) / 8
    b = np.array([r["per_problem_correct"] for r in data["results"] if r["init"] == "sft"]) / 8
    want = seed_problem_difference(a - b)
    assert measured["half_width"] == pytest.approx((want["high"] - want["low"]) / 2, rel=1e-12)
    assert planned["half_width"] == pytest.approx(measured["half_width"], rel=1e-9)
    assert planned["mdd"] == pytest.approx(want["mdd"], rel=1e-9)


def test_the_cost_is_the_stated_formula_and_more_seeds_resolve_less():
    rows = plan(
        _results(),
        metrics=("pass@1",),
        seeds=(3, 10),
        problems=(300,),
        samples=(8, 16),
        finetune_min=2.0,
        eval_min=3.0,
    )
    planned = {(r["seeds"], r["samples"]): r for r in rows if r["design"] == "planned"}
    # 2 starts x seeds x (F + E P n / 2400) + E P n / 2400
    assert planned[(3, 8)]["cpu_min"] == pytest.approx(2 * 3 * (2 + 3) + 3)
    assert planned[(10, 16)]["cpu_min"] == pytest.approx(2 * 10 * (2 + 6) + 6)
    assert planned[(10, 8)]["mdd"] < planned[(3, 8)]["mdd"]
    assert planned[(3, 16)]["mdd"] <= planned[(3, 8)]["mdd"]  # fewer sampling errors


def test_metrics_other_than_pass_at_1_are_planned_at_their_samples():
    rows = plan(_results(), metrics=("pass@4",), seeds=(3,), problems=(40,), samples=(8, 16))
    assert {r["samples"] for r in rows} == {8}


def test_one_training_seed_is_refused_with_the_way_out(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results(seeds=(0,))))
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "two or more training seeds" in err and "--resume" in err
    assert main(["plan", str(tmp_path / "none.json")]) == 2
    assert "no such results file" in capsys.readouterr().err


def test_the_command_writes_its_table_and_figure(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    assert main(["plan", str(path), "--metrics", "pass@1", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "gift:5 - sft (before RL), pass@1" in out and "measured" in out
    assert (tmp_path / "p" / "plan.csv").exists() and (tmp_path / "p" / "plan.png").exists()


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--metrics", "pass@20"], "--metrics pass@20: not a per-problem metric"),
        (["--metrics", "pass@0"], "--metrics pass@0: not a per-problem metric"),
        (["--metrics", "pass@x"], "--metrics pass@x: not a per-problem metric"),
        (["--metrics", "pass@1,entropy"], "--metrics entropy: not a per-problem metric"),
        (["--metrics", ","], "--metrics (empty)"),
        (["--against", "kd_base"], "--against 'kd_base': no start of that name"),
    ],
)
def test_a_metric_or_start_the_results_do_not_hold_is_named_with_the_choices(
    tmp_path, capsys, argv, said
):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    assert main(["plan", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "pass@1 .. pass@8, distinct_correct" in err or "starts: gift:5, sft" in err


def test_a_results_file_that_is_not_json_is_named_with_its_line(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text('{"config": {},\n "results": [oops]}')
    assert main(["plan", str(path)]) == 2
    assert f"{path}: not a results file: not JSON at line 2, column 14" in capsys.readouterr().err
    path.write_bytes(b"\xff\xfe{}")
    assert main(["plan", str(path)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
