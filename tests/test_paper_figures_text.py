"""paper_figures/README.md quotes its numbers from the committed CSVs: every claims-table row and
every quoted line giftlab.figures.claims formats from them stands verbatim in the README."""

from pathlib import Path

from giftlab.figures.claims import claims, factorial_table, quoted_lines

FOLDER = Path(__file__).resolve().parents[1] / "paper_figures"


def test_every_number_in_the_index_is_computed_from_the_committed_csv():
    readme = (FOLDER / "README.md").read_text()
    quoted = claims(FOLDER) + factorial_table(FOLDER) + quoted_lines(FOLDER)
    missing = [line for line in quoted if line and line not in readme]
    assert not missing, "README.md differs from the CSVs:\n" + "\n".join(missing)


def test_committed_figures_come_from_a_clean_tree():
    for csv in FOLDER.glob("fig*.csv"):
        head = csv.read_text().splitlines()[0]
        assert head.startswith("# code_version:") and not head.endswith("-dirty"), (csv, head)
