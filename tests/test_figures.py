"""Every figure script runs with --quick into a temporary folder; `giftlab demo --quick` reports."""

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
    with pytest.raises(InputError, match="would replace the full-size figures"):
        fig1_gate.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "fig1_gate.png").read_bytes() == b"full size"
