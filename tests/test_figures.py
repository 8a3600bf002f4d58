"""Every figure script runs with --quick into a temporary folder; `giftlab demo --quick` reports."""

from pathlib import Path

import pytest

from giftlab.cli import main
from giftlab.figures import figure_scripts


def test_every_figure_script_writes_png_and_csv(tmp_path):
    """Each figure's main, in this process (the CLI's subprocess per figure: the demo test)."""
    import importlib

    import matplotlib.pyplot as plt

    for script in figure_scripts():
        importlib.import_module(f"giftlab.figures.{script.stem}").main(
            ["--quick", "--out", str(tmp_path)]
        )
        plt.close("all")
    for script in figure_scripts():
        png, csv = tmp_path / f"{script.stem}.png", tmp_path / f"{script.stem}.csv"
        assert png.stat().st_size > 10_000, script.name
        text = csv.read_text()
        assert text.startswith("# code_version:") and len(text.splitlines()) > 5, script.name
    from giftlab.figures.claims import claims, quoted_lines

    assert len(claims(tmp_path)) == 7 and len(quoted_lines(tmp_path)) >= 18


@pytest.mark.slow
def test_demo_writes_a_report_with_every_figure(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    for script in figure_scripts():
        assert f"![{script.stem}]({script.stem}.png)" in report
    assert "exact g_t" in report


def test_a_figure_module_run_with_quick_never_writes_over_full_size_figures(tmp_path):
    from giftlab.errors import InputError
    from giftlab.figures import fig1_gate

    (tmp_path / "fig1_gate.png").write_bytes(b"full size")
    (tmp_path / "fig1_gate.csv").write_text("# code_version: abc\nbeta,gate\n")  # giftlab's
    with pytest.raises(InputError, match="would replace the full-size figures"):
        fig1_gate.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "fig1_gate.png").read_bytes() == b"full size"


def test_figures_never_replace_a_user_s_files_of_the_same_names(tmp_path, capsys):
    """Before: `giftlab figures --out mine` replaced the user's fig1_gate.png without a word.
    A file is giftlab's when the folder carries giftlab's figure mark, or a CSV opens with
    giftlab's provenance lines (a PNG: its CSV beside it)."""
    from giftlab.cli import main
    from giftlab.figures import prepare_figure_folder

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "fig1_gate.png").write_bytes(b"my own plot")
    (mine / "fig2_gains.csv").write_text("x,y\n1,2\n")
    for argv in (["figures", "--out", str(mine)], ["figures", "--quick", "--out", str(mine)]):
        assert main(argv) == 2
        assert "holds fig1_gate.png, which giftlab did not write" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["fig1_gate.png", "fig2_gains.csv"]
    assert (mine / "fig1_gate.png").read_bytes() == b"my own plot"
    ours = tmp_path / "ours"  # figures giftlab wrote before folders were marked
    ours.mkdir()
    (ours / "fig1_gate.png").write_bytes(b"png")
    (ours / "fig1_gate.csv").write_text("# code_version: abc\nbeta,gate\n")
    prepare_figure_folder(ours, quick=False)
    assert (ours / ".giftlab-figures").read_text() == "full\n"


def test_one_rule_leaves_out_every_real_run_whose_base_solves_nothing(tmp_path):
    """Sweeps and pipelines alike: a run whose base solves no held-out problem (pass@n 0) cannot
    show diversity kept from the base and leaves the verdicts with that reason; one whose base
    solves some gives rows naming its prompts and its training seeds."""
    import json
    from pathlib import Path

    from giftlab.figures.claims import RealEvidence

    committed = Path(__file__).resolve().parents[1] / "paper_figures" / "pipeline" / "results.json"
    data = json.loads(committed.read_text())
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "results.json").write_text(json.dumps(data))
    for r in data["results"]:
        if r["init"] == "base":
            r["pass@8"] = 0.3  # a base that solves some problems
    (tmp_path / "pipeline_fewshot").mkdir()
    (tmp_path / "pipeline_fewshot" / "results.json").write_text(json.dumps(data))
    real = RealEvidence(tmp_path)
    [left] = real.left_out_rows()
    assert "real, pipeline (short prompts; base pass@8 0.000)" in left
    assert "the base solves none of the held-out problems" in left
    rows = real.rows("accuracy")
    assert len(rows) == 1 and "pipeline (few-shot prompts; base pass@8 0.300)" in rows[0]
    assert "2 training seeds" in rows[0] and "gift:10 pass@1 after RL" in rows[0]


def test_two_figure_runs_into_one_folder_at_once_are_refused(tmp_path, capsys):
    """The figure modules write a fixed set of names: two runs at once would mix them."""
    from giftlab.cli import main
    from giftlab.outputs import OUT_LOCK, acquire_lock, release_lock

    out = tmp_path / "figs"
    out.mkdir()
    fd = acquire_lock(out / OUT_LOCK, "first")
    try:
        assert main(["figures", "--quick", "--out", str(out)]) == 2
        assert "is in use by another giftlab command" in capsys.readouterr().err
        assert not any(out.glob("fig*"))
    finally:
        release_lock(fd)


def test_the_claims_command_names_a_missing_or_broken_input_in_one_line(tmp_path, capsys):
    import shutil

    from giftlab.figures.claims import main as claims_main

    root = Path(__file__).resolve().parents[1] / "paper_figures"
    assert claims_main([str(tmp_path / "nosuch")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert claims_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "_summary.csv is missing" in err and f"giftlab figures --out {tmp_path}" in err
    for csv_file in root.glob("*.csv"):
        shutil.copy2(csv_file, tmp_path)
    (tmp_path / "pipeline_fewshot").mkdir()
    (tmp_path / "pipeline_fewshot" / "results.json").write_text('{"config": {},\n oops}')
    assert claims_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pipeline_fewshot/results.json: not a results file: not JSON at line 2" in err
    assert claims_main([str(root)]) == 0
    assert "| paper claim |" in capsys.readouterr().out
