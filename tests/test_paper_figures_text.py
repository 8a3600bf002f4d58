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
    import json

    runs = list(FOLDER.glob("*/results.json"))
    assert len(runs) >= 2  # the real-model runs: the sweeps and the pipeline
    for path in runs:
        version = json.loads(path.read_text())["provenance"]["code_version"]
        assert not version.endswith("-dirty"), (path, version)


def test_real_verdicts_need_every_training_seed_on_the_claimed_side():
    from giftlab.figures.claims import _real_verdict

    d = {"low": 0.01, "high": 0.05, "mdd": 0.02}
    assert _real_verdict(d | {"per_seed": {0: 0.02, 1: 0.04}}) == "holds"
    assert _real_verdict(d | {"per_seed": {0: 0.05, 1: -0.01}}) == (
        "not decidable (training seeds disagree)"
    )
    assert _real_verdict(d) == "holds for one training seed"
    # a decrease is the claim (drift): the same interval reads the other way round
    assert _real_verdict(d | {"per_seed": {0: 0.02, 1: 0.04}}, sign=-1) == "not supported"
    # an interval over problems far from 0, but the seeds point both ways
    drift = {"low": 0.025, "high": 0.056, "mdd": 0.02, "per_seed": {0: 0.26, 1: -0.18}}
    assert _real_verdict(drift, sign=-1) == "not decidable (training seeds disagree)"
    neg = {"low": -0.05, "high": -0.01, "mdd": 0.02, "per_seed": {0: -0.02, 1: -0.04}}
    assert _real_verdict(neg, sign=-1) == "holds"
    wide = {"low": -0.03, "high": 0.05, "mdd": 0.04, "per_seed": {0: 0.0, 1: 0.01}}
    assert _real_verdict(wide) == "not decidable at this budget"
