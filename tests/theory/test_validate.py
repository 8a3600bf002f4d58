"""giftlab.theory.validate and `giftlab validate`: the exact target passes, plain GIFT is flagged
on its worst instance (re-measured here by brute force), invalid variants are one-line errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from giftlab.cli import main
from giftlab.theory import TabularLM, sequence_gibbs
from giftlab.theory.gift import gift_target, sequence_consistent_gift_target
from giftlab.theory.validate import (
    Grid,
    Instance,
    VariantError,
    check_instance,
    gold_log_odds,
    validate_variant,
)

SMALL = Grid(vocab=(2, 3), horizon=(3,), concentration=(0.5,), eta=(0.5, 8.0), seeds=(0, 1))


def exact(base, tokens, eta):
    return sequence_consistent_gift_target(base, tokens, eta)


def plain(base, tokens, eta):
    return gift_target(base, tokens, eta)


def brute_force_kl(inst: Instance, fn) -> float:
    """KL(induced || exact) by enumerating every sequence: the induced probability of a sequence
    is the product of the variant's rows while it follows the gold path and of the base after."""
    lm, gold = inst.build()
    seqs = lm.sequences()
    reward = np.all(seqs == gold, axis=1).astype(float)
    exact_p = sequence_gibbs(lm, reward, inst.eta)
    base_rows, prefix = [], 0
    for d, y in enumerate(gold):
        base_rows.append(lm.probs[d][prefix])
        prefix = prefix * lm.vocab_size + int(y)
    q = fn(np.array(base_rows), np.array(gold), inst.eta)
    induced = np.empty(len(seqs))
    for n, s in enumerate(seqs):
        p, on_path, prefix = 1.0, True, 0
        for d, a in enumerate(s):
            p *= q[d][a] if on_path else lm.probs[d][prefix][a]
            on_path = on_path and a == gold[d]
            prefix = prefix * lm.vocab_size + int(a)
        induced[n] = p
    keep = induced > 0
    return float(np.sum(induced[keep] * np.log(induced[keep] / exact_p[keep])))


def test_the_sequence_consistent_target_matches_the_exact_policy_everywhere():
    v = validate_variant(exact, SMALL, tolerance=1e-12, search=10)
    assert v.passed
    assert max(r["kl"] for r in v.rows) < 1e-13  # round-off of V^T float64 terms
    assert max(r["gain_error"] for r in v.rows) < 1e-9
    assert max(r["stationary_gap"] for r in v.rows) < 1e-12  # pi* is stationary for its loss
    assert max(r["limit_zero_gap"] for r in v.rows) < 1e-7  # eta = 1e-8: q - pi0 = O(eta)
    assert max(r["limit_inf_gap"] for r in v.rows) < 1e-12


def test_plain_gift_is_flagged_and_its_worst_instance_replays_to_the_brute_force_kl():
    v = validate_variant(plain, SMALL, tolerance=1e-8, search=10)
    assert not v.passed
    worst = Instance.parse(
        ",".join(f"{k}={v.worst[k]!r}" for k in ("vocab", "horizon", "concentration"))
        + f",eta={v.worst['eta']!r},seed={v.worst['seed']!r},gold={v.worst['gold']!r}"
    )
    np.testing.assert_allclose(v.worst["kl"], brute_force_kl(worst, plain), rtol=1e-9)
    assert v.worst["kl"] > 0.1 and v.worst["stationary_gap"] > 0.1
    # the cell summary's interval brackets its mean over the seeds
    for s in v.summary:
        assert s["kl_low"] <= s["kl_mean"] <= s["kl_high"] and s["seeds"] == 2


@given(
    st.integers(2, 4),
    st.integers(2, 4),
    st.floats(0.2, 2.0),
    st.floats(0.01, 30.0),
    st.integers(0, 1000),
    st.floats(0.0, 1.0),
)
def test_instance_kl_equals_brute_force_enumeration(v, t, c, eta, seed, gold):
    inst = Instance(v, t, c, eta, seed, gold)
    assert Instance.parse(inst.replay()) == inst
    for fn in (plain, exact):
        row = check_instance(fn, inst)
        np.testing.assert_allclose(row["kl"], max(brute_force_kl(inst, fn), 0.0), atol=1e-12)


def test_gold_log_odds_keeps_precision_near_one():
    p = np.array([[1 - 1e-13, 1e-13]])
    np.testing.assert_allclose(gold_log_odds(p, np.array([0])), np.log((1 - 1e-13) / 1e-13))
    lm = TabularLM.random(3, 2, seed=0)
    q = lm.probs[0]
    naive = np.log(q[0, 1] / (1 - q[0, 1]))
    np.testing.assert_allclose(gold_log_odds(q, np.array([1])), naive)


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda b, t, e: b[:-1], r"shape \(2, 2\), expected \(3, 2\)"),
        (lambda b, t, e: -b, r"negative, NaN or infinite"),
        (lambda b, t, e: b * np.nan, r"negative, NaN or infinite"),
        (lambda b, t, e: b * 2, r"row \d sums to 2, not 1"),
        (lambda b, t, e: 1 / 0, r"raised ZeroDivisionError on instance vocab=2"),
        (lambda b, t, e: "text", r"returned str, not an array"),
    ],
)
def test_invalid_variants_are_one_line_errors(fn, message):
    with pytest.raises(VariantError, match=message):
        validate_variant(fn, SMALL, search=0)


def test_the_command_exits_0_1_2_and_writes_its_files(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_targets.py").write_text(
        "from giftlab.theory.gift import gift_target, sequence_consistent_gift_target\n"
        "def exact(base, tokens, eta):\n"
        "    return sequence_consistent_gift_target(base, tokens, eta)\n"
        "def plain(base, tokens, eta):\n"
        "    return gift_target(base, tokens, eta)\n"
        "def bad(base, tokens, eta):\n"
        "    return base[:, :1]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    common = ["--seeds", "1", "--search", "5"]
    assert main(["validate", "my_targets:exact", *common, "--out", "ok"]) == 0
    for name in ("report.md", "validate.csv", "validate.png"):
        assert (tmp_path / "ok" / name).stat().st_size > 0
    assert "PASS" in (tmp_path / "ok" / "report.md").read_text()
    capsys.readouterr()
    assert main(["validate", "my_targets:plain", *common, "--out", "no"]) == 1
    out = capsys.readouterr().out
    assert "does NOT match" in out and "worst KL" in out
    replay = out.split(" at ")[1].split(";")[0]
    report = (tmp_path / "no" / "report.md").read_text()
    assert f"giftlab validate my_targets:plain --replay '{replay}'" in report  # filled in
    assert main(["validate", "my_targets:plain", "--replay", replay]) == 1
    for spec, message in (
        ("my_targets:bad", "shape"),
        ("my_targets:nothere", "has no 'nothere'"),
        ("no_such_module:f", "cannot import no_such_module"),
        ("just_a_name", "MODULE:FUNCTION"),
    ):
        capsys.readouterr()
        assert main(["validate", spec, *common, "--out", "x"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


# the three variants of a user's first day (GIFT's own target, half the base and half one-hot,
# and beta on the wrong side) and a target that stops growing at eta = 20
from giftlab.variants import log, onehot, softmax  # noqa: E402

GRID = Grid(vocab=(2, 3), horizon=(3, 4), concentration=(0.3, 1.0), eta=(0.5, 5.0, 100.0))


def gift_paper(base, tokens, eta):
    return softmax(log(base) + eta * onehot(base, tokens))


def half_mix(base, tokens, eta):
    return 0.5 * base + 0.5 * onehot(base, tokens)


def wrong_side(base, tokens, eta):
    return softmax(log(base) / (1.0 + eta) + onehot(base, tokens))


def capped_exact(base, tokens, eta):
    return sequence_consistent_gift_target(base, tokens, min(eta, 20.0))


def test_the_validator_ranks_gift_above_the_wrong_side_and_the_half_mix():
    runs = {
        f.__name__: validate_variant(f, GRID, search=0) for f in (gift_paper, half_mix, wrong_side)
    }
    median = {k: v.scores["variant"]["median"] for k, v in runs.items()}
    assert median["gift_paper"] < median["wrong_side"] and median["gift_paper"] < median["half_mix"]
    # the paper's target is the built-in gift, instance for instance; the others are worse
    assert runs["gift_paper"].worse_than_gift == []
    np.testing.assert_allclose(
        [r["kl"] for r in runs["gift_paper"].rows],
        [r["kl"] for r in runs["gift_paper"].references["gift"]],
        rtol=1e-9,
        atol=1e-15,
    )
    assert len(runs["half_mix"].worse_than_gift) > len(GRID.instances()) // 2
    assert len(runs["wrong_side"].worse_than_gift) > len(GRID.instances()) // 2
    # the ranking puts gift_seq (exact) first and the variant where its median KL says
    ranked = [k for k, _ in runs["gift_paper"].ranking()]
    assert ranked[0] == "gift_seq"
    ranked = [k for k, _ in runs["half_mix"].ranking()]
    assert ranked.index("gift") < ranked.index("variant")
    for v in runs.values():  # no variant here passes: the limits and stationarity decide too
        assert not v.passed


def test_a_target_that_stops_at_eta_20_fails_on_the_limit_and_at_large_eta():
    v = validate_variant(capped_exact, GRID, search=0)
    assert not v.passed
    ok, gap, _ = v.checks["limit_inf"]
    assert not ok and gap > 0.1  # at eta = 200 it is the eta = 20 target, far from one-hot
    assert v.checks["limit_zero"][0]
    big = [r["kl"] for r in v.rows if r["eta"] == 100.0]
    small = [r["kl"] for r in v.rows if r["eta"] <= 5.0]
    assert max(big) > 1e-3 and max(small) < 1e-12  # exact below 20, wrong above
    assert Grid().eta[-1] >= 100  # the default grid reaches it


def test_the_exact_target_passes_every_check():
    v = validate_variant(exact, GRID, search=0)
    assert v.passed and all(ok for ok, _, _ in v.checks.values())


def test_cell_intervals_never_go_below_zero():
    v = validate_variant(half_mix, GRID, search=0)
    assert all(s["kl_low"] >= 0 for s in v.summary)
    assert any(s["kl_high"] > s["kl_mean"] > s["kl_low"] for s in v.summary)


def test_validate_exit_2_for_modules_that_cannot_be_imported_and_impossible_replays(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "broken_syntax.py").write_text("def f(base, tokens, eta)\n    return base\n")
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('no GPU here')\n")
    (tmp_path / "fine.py").write_text("def f(base, tokens, eta):\n    return base\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = [
        (["broken_syntax:f"], "syntax error"),
        (["raises_on_import:f"], "RuntimeError: no GPU here"),
        (
            ["fine:f", "--replay", "vocab=1,horizon=3,concentration=0.5,eta=1,seed=0,gold=0"],
            "vocab",
        ),
        (["fine:f", "--replay", "vocab=3,horizon=3,concentration=0.5,eta=1,seed=0,gold=2"], "gold"),
        (
            ["fine:f", "--replay", "vocab=3,horizon=3,concentration=-1,eta=1,seed=0,gold=0"],
            "concentration",
        ),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(["validate", *argv, "--search", "0", "--out", "v"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
