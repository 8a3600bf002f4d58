"""Every figure script runs with --quick into a temporary folder; `giftlab demo --quick` reports."""

import pytest

from giftlab.cli import main
from giftlab.figures import figure_scripts


def test_every_figure_script_writes_png_and_csv(tmp_path):
    assert main(["figures", "--quick", "--out", str(tmp_path)]) == 0
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
