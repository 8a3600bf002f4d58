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
    for csv in [*FOLDER.glob("fig*.csv"), *FOLDER.glob("benchmarks/**/*.csv")]:
        head = csv.read_text().splitlines()[0]
        assert head.startswith("# code_version:") and not head.endswith("-dirty"), (csv, head)
    import json

    runs = list(FOLDER.glob("*/results.json"))
    assert len(runs) >= 2  # the real-model runs: the sweeps and the pipeline
    for path in runs:
        version = json.loads(path.read_text())["provenance"]["code_version"]
        assert not version.endswith("-dirty"), (path, version)


def test_real_verdicts_decide_only_with_an_interval_over_training_seeds():
    from giftlab.figures.claims import _real_verdict

    two = {"low": 0.01, "high": 0.05, "mdd": 0.02, "n_seeds": 2}
    assert _real_verdict(two) == "holds"
    assert _real_verdict(two, sign=-1) == "not supported"  # a decrease is the claim (drift)
    # one training seed: no interval over seeds, so nothing is decided however narrow the rest
    one = {"low": float("nan"), "high": float("nan"), "mdd": float("nan"), "n_seeds": 1}
    assert _real_verdict(one) == "not decidable at this budget (1 training seed)"
    wide = {"low": -0.03, "high": 0.05, "mdd": 0.04, "n_seeds": 5}
    assert _real_verdict(wide) == "not decidable at this budget"
    neg = {"low": -0.05, "high": -0.01, "mdd": 0.02, "n_seeds": 3}
    assert _real_verdict(neg, sign=-1) == "holds"
    # a very wide interval whose top is below its own resolvable difference is still undecided
    huge = {"low": -0.7, "high": 0.6, "mdd": 0.73, "n_seeds": 2}
    assert _real_verdict(huge) == "not decidable at this budget"
