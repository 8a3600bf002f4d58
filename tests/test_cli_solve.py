"""`giftlab solve`: the report's numbers against the exact solvers, JSON output, bad input."""

import json

import numpy as np

from giftlab.cli import main
from giftlab.theory import TabularLM, sequence_gibbs
from giftlab.theory.gift import exact_gains, gold_path


def test_solve_json_matches_exact_solvers(capsys):
    assert main(["solve", "--json", "--seed", "3", "--betas", "0,2,inf", "--eta", "4"]) == 0
    text = capsys.readouterr().out

    def not_json(token):  # Python's json accepts Infinity and NaN; strict JSON does not
        raise AssertionError(f"non-JSON token {token} in solve --json")

    report = json.loads(text, parse_constant=not_json)
    assert report["by_beta"][-1]["beta"] == "inf"  # inf written as a string
    lm = TabularLM.random(4, 4, seed=3, concentration=0.5)
    gold = report["instance"]["gold"]
    seqs = lm.sequences()
    gi = int(np.flatnonzero(np.all(seqs == gold, axis=1))[0])
    reward = np.zeros(lm.n_sequences)
    reward[gi] = 1.0
    for row in report["by_beta"]:
        exact = sequence_gibbs(lm, reward, float(row["beta"]))
        np.testing.assert_allclose(row["exact_gold_mass"], exact[gi], rtol=1e-12)
        assert row["gift_gold_mass"] >= row["exact_gold_mass"] - 1e-12  # g_t <= beta
    _, base, tokens = gold_path(lm, gold)
    gains = exact_gains(np.log(base[np.arange(len(tokens)), tokens]), 4.0)
    np.testing.assert_allclose([r["exact_gain"] for r in report["gold_path"]], gains, rtol=1e-12)
    assert report["gold_path"][-1]["exact_gain"] == 4.0


def test_solve_prints_tables(capsys):
    assert main(["solve", "--end-token", "0", "--correct-fraction", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "gold mass" in out and "exact g_t" in out


def test_solve_rejects_negative_beta(capsys):
    assert main(["solve", "--betas", "1,-1"]) == 2
    assert "beta must be in [0, inf], got -1.0" in capsys.readouterr().err
