"""`giftlab pipeline` plumbing on a tiny random model saved to a folder (the real run is the CLI's)."""

import json
from pathlib import Path

import pytest

from giftlab.pipeline import PipelineConfig, run_pipeline
from tests.helpers import tiny_pipeline_config


@pytest.mark.slow
def test_pipeline_writes_report_table_and_figure(tmp_path):
    cfg = tiny_pipeline_config(tmp_path, n_train=16, inits=["sft", "gift:5"], seeds=[0, 1])
    report = run_pipeline(cfg, log=lambda *a: None).read_text()
    assert "| sft | after RL | 2 |" in report and "| gift:5 | before RL | 2 |" in report
    assert "| init - sft | stage |" in report  # the paired comparison, problems as the unit
    assert "resolvable " in report and "2 training seeds (" in report
    assert (tmp_path / "p" / "pipeline.png").stat().st_size > 10_000
    results = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    assert len(results) == 1 + 2 * 2 * 2  # base + inits x seeds x stages
    # any interval can be recomputed: every row keeps each problem's correct count
    from giftlab.diagnostics import pass_at_k

    sft_after = [r for r in results if r["init"] == "sft" and r["stage"] == "after RL"]
    assert all(len(r["per_problem_correct"]) == 2 for r in sft_after)
    assert all(len(r["drift/kl_to_base"]) == 2 for r in sft_after)  # per problem, pairable
    mean = sum(float(pass_at_k(2, c, 1)) for r in sft_after for c in r["per_problem_correct"]) / 4
    line = next(x for x in report.splitlines() if x.startswith("| sft | after RL | 2 |"))
    assert line.split("|")[4].strip().startswith(f"{mean:.3f}")
    assert all(len(r["rl_reward_mean"]) == 2 for r in sft_after)  # the RL curve is kept too
    # the report again from results.json alone: the same text once the run folders are gone
    import shutil

    from giftlab.pipeline import rebuild_report

    for run in (tmp_path / "p").glob("*-seed*"):
        shutil.rmtree(run)
    (tmp_path / "p" / "report.md").unlink()
    again = rebuild_report(tmp_path / "p").read_text()
    assert again.splitlines()[1:] == report.splitlines()[1:]


def test_paired_vs_sft_by_hand():
    """Synthetic per-problem counts: the mean difference, each seed's and the CI by hand."""
    from giftlab.stats import paired_vs_sft

    def row(init, seed, counts, drift):
        return {
            "init": init,
            "seed": seed,
            "stage": "after RL",
            "per_problem_correct": counts,
            "drift/kl_to_base": drift,
        }

    results = [
        row("sft", 0, [0, 2, 4, 1], [1.0, 1.0, 1.0, 1.0]),
        row("gift:10", 0, [1, 2, 4, 3], [0.5, 0.5, 1.0, 1.0]),
        row("sft", 1, [1, 1, 4, 0], [1.0, 2.0, 1.0, 1.0]),
        row("gift:10", 1, [1, 3, 3, 0], [1.0, 1.0, 1.0, 1.0]),
    ]
    got = {r["metric"]: r for r in paired_vs_sft(results, 4, ["pass@1", "drift/kl_to_base"])}
    # pass@1 = c / n: seed 0 differences (1, 0, 0, 2)/4, seed 1 (0, 2, -1, 0)/4
    assert got["pass@1"]["per_seed"] == pytest.approx({0: 3 / 16, 1: 1 / 16})
    assert got["pass@1"]["mean"] == pytest.approx(4 / 32)
    assert got["pass@1"]["low"] <= 4 / 32 <= got["pass@1"]["high"]
    # the two-way mean squares by hand: seed means 3/16, 1/16 (grand 1/8); problem means
    # (1/8, 1/4, -1/8, 1/4); residual d - seed mean - problem mean + grand
    ms_seed = 4 * ((1 / 16) ** 2 + (1 / 16) ** 2) / 1
    ms_problem = 2 * sum((m - 1 / 8) ** 2 for m in (1 / 8, 1 / 4, -1 / 8, 1 / 4)) / 3
    d = [[1 / 4, 0, 0, 2 / 4], [0, 2 / 4, -1 / 4, 0]]
    pm = [1 / 8, 1 / 4, -1 / 8, 1 / 4]
    sm = [3 / 16, 1 / 16]
    res = sum((d[s][p] - sm[s] - pm[p] + 1 / 8) ** 2 for s in range(2) for p in range(4))
    ms_res = res / 3
    # the variance of the mean, never below the noise term (here the residual dominates)
    se = (max(ms_seed + ms_problem - ms_res, ms_res) / 8) ** 0.5
    half = got["pass@1"]["high"] - got["pass@1"]["mean"]
    from scipy import stats as sps

    df = (ms_seed + ms_problem - ms_res) ** 2 / (ms_seed**2 / 1 + ms_problem**2 / 3 + ms_res**2 / 3)
    assert half == pytest.approx(sps.t.ppf(0.975, max(df, 1.0)) * se, rel=1e-9)
    assert got["pass@1"]["n_seeds"] == 2
    assert got["drift/kl_to_base"]["per_seed"] == pytest.approx({0: -0.25, 1: -0.25})
    assert got["pass@1"]["n"] == 4


@pytest.mark.slow
def test_a_registered_variant_runs_through_the_pipeline(tmp_path):
    """'mix_np' is registered in tests/conftest.py from its numpy target alone."""
    cfg = tiny_pipeline_config(
        tmp_path, inits=["sft", "mix_np:0.3"], seeds=[0], select="final", rl_steps=1
    )
    run_pipeline(cfg, log=lambda *a: None)
    rows = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    assert {(r["init"], r["stage"]) for r in rows} >= {("mix_np:0.3", "after RL")}
    sft_cfg = json.loads((tmp_path / "p" / "mix_np-0.3-seed0" / "sft" / "config.json").read_text())
    assert sft_cfg["config"]["objective"] == "mix_np"
    assert sft_cfg["config"]["hyper"] == {"np_weight": 0.3}


def test_a_pipeline_resumes_its_own_folder_whatever_its_starts_are_named(tmp_path):
    """The cells of 'gift:1e-05' and of a registered objective named 'MyMix' are the pipeline's
    own because it recorded them (layout.json), not because their names look like cells: a
    resume keeps them and appends a seed; a user's folder beside them is still foreign."""
    from giftlab.losses import OBJECTIVES, gift_loss, register_objective

    register_objective("MyMix", gift_loss, needs_ref=True, hyper={"beta": "beta"})
    try:
        _resume_a_pipeline_of_odd_names(tmp_path)
    finally:  # other tests cover every registered objective
        del OBJECTIVES["MyMix"]


def _resume_a_pipeline_of_odd_names(tmp_path):
    from giftlab.errors import RunDirError

    cfg = tiny_pipeline_config(
        tmp_path, inits=["gift:1e-05", "MyMix"], seeds=[0], select="final", rl_steps=0
    )
    run_pipeline(cfg, log=lambda *a: None)
    out = tmp_path / "p"
    made = json.loads((out / "layout.json").read_text())["made"]
    assert made == ["MyMix-seed0", "gift-1e-05-seed0"]
    logs = []
    run_pipeline(
        PipelineConfig(**(cfg.to_dict() | {"seeds": [0, 1]})), log=logs.append, resume=True
    )
    rows = json.loads((out / "results.json").read_text())["results"]
    assert sorted({(r["init"], r["seed"]) for r in rows if r["init"] != "base"}) == [
        ("MyMix", 0),
        ("MyMix", 1),
        ("gift:1e-05", 0),
        ("gift:1e-05", 1),
    ]
    assert any("[MyMix seed 0] kept" in str(x) for x in logs)
    # overwrite=true may remove what the record names, and refuses a folder it did not make
    (out / "MyNotes-seed0").mkdir()
    with pytest.raises(RunDirError, match="MyNotes-seed0"):
        run_pipeline(PipelineConfig(**(cfg.to_dict() | {"overwrite": True})))


def test_a_pipeline_folder_without_a_record_is_known_from_its_config(tmp_path):
    """A folder written before layout.json existed: its cells are those its config.json names."""
    from giftlab.pipeline import PipelineLayout

    out = tmp_path / "old"
    (out / "gift-5-k16-seed1").mkdir(parents=True)
    config = {"config": {"inits": ["sft", "gift:5@k16"], "seeds": [0, 1]}}
    (out / "config.json").write_text(json.dumps(config))
    layout = PipelineLayout(out)
    assert layout("gift-5-k16-seed1") and layout("sft-seed0") and layout("ref-cache-k16")
    assert not layout("sft-seed2") and not layout("notes")
    layout.record("sft-seed2")
    assert json.loads((out / "layout.json").read_text())["made"] == [
        "gift-5-k16-seed0",
        "gift-5-k16-seed1",
        "ref-cache-k16",
        "sft-seed0",
        "sft-seed1",
        "sft-seed2",
    ]
    (out / "layout.json").write_text("{not json")
    with pytest.raises(Exception, match="layout.json is damaged"):
        PipelineLayout(out)("sft-seed0")


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_an_experiment_config_loads_and_matches_its_committed_results(path):
    """configs/*.yaml are the settings of the committed real-model experiments: each loads as a
    PipelineConfig, and where its out_dir holds results, they were made with these settings
    (all but out_dir and the seeds, which the campaign appends)."""
    cfg = PipelineConfig.from_yaml(path)
    results = Path(__file__).resolve().parents[1] / cfg.out_dir / "results.json"
    if not results.exists():
        pytest.skip(f"{cfg.out_dir} holds no results yet")
    ran = json.loads(results.read_text())["config"]
    mine = cfg.to_dict()
    differ = {
        k: (ran[k], mine[k])
        for k in ran
        if k in mine and k not in ("out_dir", "seeds", "overwrite") and ran[k] != mine[k]
    }
    assert not differ, f"{path.name} differs from {results}: {differ}"


def test_a_resume_with_fewer_seeds_keeps_the_run_s_and_says_so(tmp_path):
    """Before: `seeds=0 --resume` on a run of seeds 0 and 1 rewrote its config to [0] and the
    report called the run stopped."""
    cfg = tiny_pipeline_config(tmp_path, inits=["sft"], seeds=[0, 1], select="final", rl_steps=0)
    run_pipeline(cfg, log=lambda *a: None)
    out = tmp_path / "p"
    logs = []
    run_pipeline(PipelineConfig(**(cfg.to_dict() | {"seeds": [0]})), log=logs.append, resume=True)
    assert any("--resume keeps the run's seeds [0, 1]" in str(x) for x in logs)
    assert json.loads((out / "config.json").read_text())["config"]["seeds"] == [0, 1]
    report = (out / "report.md").read_text()
    assert "the run was stopped" not in report and "[0, 1]" in report


def test_a_pipeline_rebuilds_its_own_cache_of_an_older_version_on_resume(tmp_path):
    """A gift@kN start trains from the pipeline's own reference cache; one built by an older
    giftlab (cache version 1, no checksums) is rebuilt on resume instead of stopping the cell."""
    import json

    from giftlab.engine.cache import VERSION, RefCache
    from giftlab.pipeline import PipelineConfig, run_pipeline

    common = tiny_pipeline_config(tmp_path, inits=["sft", "gift:5@k4"], rl_steps=0).to_dict()
    common.pop("seeds")
    quiet = lambda *a: None  # noqa: E731
    run_pipeline(PipelineConfig(seeds=[0], **common), log=quiet)
    cache = tmp_path / "p" / "ref-cache-k4"
    manifest = json.loads((cache / "manifest.json").read_text())
    old = {k: v for k, v in manifest.items() if k not in ("files", "checksum")} | {"version": 1}
    (cache / "manifest.json").write_text(json.dumps(old))
    run_pipeline(PipelineConfig(seeds=[0, 1], **common), log=quiet, resume=True)
    assert RefCache(cache).manifest["version"] == VERSION
    rows = json.loads((tmp_path / "p" / "results.json").read_text())["results"]
    assert {(r["init"], r["seed"]) for r in rows if r["init"] != "base"} == {
        (i, s) for i in ("sft", "gift:5@k4") for s in (0, 1)
    }
