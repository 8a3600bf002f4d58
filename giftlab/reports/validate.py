"""`giftlab validate`'s output: report.md, validate.csv (one row per instance) and validate.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from giftlab.errors import writing
from giftlab.plots import caption, lines, panels
from giftlab.provenance import write_csv
from giftlab.theory.validate import Validation

FILES = ("report.md", "validate.csv", "validate.png")  # what write_validation writes


def _fmt(x: float) -> str:
    return f"{x:.2e}"


def _figure(v: Validation, name: str, path: Path) -> None:
    """validate.png: the largest KL per eta and gold rank (with the built-in GIFT for scale and
    the tolerance dotted), and the worst instance's gains beside the exact ones."""
    fig, (a, b) = panels(2)
    etas = sorted({r["eta"] for r in v.rows})
    ranks = sorted({r["gold"] for r in v.rows})
    series = {
        f"gold rank {g:g}": [
            max(max(r["kl"] for r in v.rows if r["eta"] == e and r["gold"] == g), 1e-18)
            for e in etas
        ]
        for g in ranks
    }
    if "gift" in v.references:  # the built-in GIFT target on the same instances, for scale
        series["built-in gift (any rank)"] = [
            max(max(r["kl"] for r in v.references["gift"] if r["eta"] == e), 1e-18) for e in etas
        ]
    lines(a, etas, series, "eta", "largest KL(induced || exact)", "", logx=True, logy=True)
    a.axhline(max(v.tolerance, 1e-18), color="k", ls=":", lw=1)
    w = worst_row(v)
    t = np.arange(len(w["gains_exact"]))
    lines(
        b,
        t,
        {"variant": w["gains_variant"], "exact g_t": w["gains_exact"]},
        "position t on the gold path",
        "gain (log-odds of the gold token)",
        "worst instance",
    )
    caption(fig, f"{name}: {'matches' if v.passed else 'does not match'} the exact Gibbs policy")
    fig.savefig(path, dpi=110)


def write_validation(v: Validation, name: str, out: Path) -> Path:
    """Write the three files into `out` (made before this is called); returns report.md."""
    csv_rows = [{k: x for k, x in r.items() if not k.startswith("gains_")} for r in v.rows]
    write_csv(out / "validate.csv", csv_rows)
    with writing(out / "validate.png"):
        _figure(v, name, out / "validate.png")
    worst = worst_row(v)
    table = [
        "| V | T | concentration | eta | gold rank | seeds | mean KL [95% CI] | max KL | "
        "max gain error | max stationarity gap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in v.summary:
        table.append(
            f"| {s['vocab']} | {s['horizon']} | {s['concentration']:g} | {s['eta']:g} | "
            f"{s['gold']:g} | {s['seeds']} | {_fmt(s['kl_mean'])} [{_fmt(s['kl_low'])}, "
            f"{_fmt(s['kl_high'])}] | {_fmt(s['kl_max'])} | {_fmt(s['gain_error_max'])} | "
            f"{_fmt(s['stationary_gap_max'])} |"
        )
    search = (
        f"Hypothesis search (targeted at the KL, inside the grid's bounds): worst KL "
        f"{_fmt(v.search['kl'])} at `{replay_text(v.search)}`."
        if v.search
        else "Hypothesis is not installed: no search beyond the grid."
    )
    text = [
        f"# giftlab validate {name}",
        "",
        f"**{'PASS' if v.passed else 'FAIL'}**: {verdict_line(v)}",
        "",
        *check_lines(v),
        "",
        search,
        "",
        "## Beside the built-in targets, on the same grid",
        "",
        *ranking_table(v, name),
        "",
        gift_comparison(v),
        "",
        "## Per cell",
        "",
        "Mean KL over seeds with its 95% t-interval (the lower end clipped at 0: a KL is never "
        "negative). The gradient of the variant's loss at the exact soft-Bellman policy is pi* - q "
        "at each gold prefix; its largest entry per cell is the last column (0: the exact policy is "
        "a stationary point).",
        "",
        *table,
        "",
        "![validate](validate.png)",
        "",
        f"Replay the worst instance: `giftlab validate {name} --replay '{replay_text(worst)}'`.",
        "",
    ]
    with writing(out / "report.md"):
        (out / "report.md").write_text("\n".join(text))
    return out / "report.md"


def replay_text(row: dict) -> str:
    keys = ("vocab", "horizon", "concentration", "eta", "seed", "gold")
    return ",".join(f"{k}={row[k]!r}" for k in keys)


CHECK_WORDS = {
    "kl": "worst KL(induced || exact) over the grid and the search",
    "limit_zero": "eta -> 0 gives the base: max |q - pi0| at eta = 1e-8",
    "limit_inf": "eta -> inf gives one-hot SFT: max |q - onehot| at eta = 200",
    "stationary": "the exact policy is a stationary point of the loss: max |pi* - q|",
}


def worst_row(v: Validation) -> dict:
    return v.search if v.search and v.search["kl"] > v.worst["kl"] else v.worst


def verdict_line(v: Validation) -> str:
    failed = [k for k, (ok, _, _) in v.checks.items() if not ok]
    if not failed:
        return "the variant induces the exact Gibbs policy on every instance, with both limits."
    comparison = gift_comparison(v)
    return "fails " + ", ".join(failed) + " (below); " + comparison[:1].lower() + comparison[1:]


def check_lines(v: Validation) -> list[str]:
    """One pass/fail line per check of the verdict."""
    return [
        f"- {'pass' if ok else 'FAIL'}: {CHECK_WORDS[k]} = {_fmt(got)} (passes at <= {_fmt(limit)})"
        for k, (ok, got, limit) in v.checks.items()
    ]


def ranking_table(v: Validation, name: str) -> list[str]:
    """The variant among gift, gift_seq and sft, closest to the exact policy first."""
    lines_ = [
        f"| rank | target | median KL | worst KL | instances with KL <= {v.tolerance:g} |",
        "|---|---|---|---|---|",
    ]
    for i, (k, s) in enumerate(v.ranking(), 1):
        shown = f"**{name}** (this variant)" if k == "variant" else f"`{k}` (built-in)"
        lines_.append(
            f"| {i} | {shown} | {_fmt(s['median'])} | {_fmt(s['worst'])} | {s['within']:.0%} |"
        )
    return lines_


def gift_comparison(v: Validation) -> str:
    """Whether the variant is at least as close to the exact policy as GIFT, and where not."""
    n = len(v.rows)
    mine, gift = v.scores["variant"], v.scores.get("gift")
    if gift is None:
        return ""
    if not v.worse_than_gift:
        return (
            f"At least as close to the exact policy as GIFT (beta = eta) on all {n} instances "
            f"(median KL {_fmt(mine['median'])} vs GIFT's {_fmt(gift['median'])})."
        )
    bad = v.worse_than_gift
    etas = sorted({r["eta"] for r in bad})
    golds = sorted({r["gold"] for r in bad})
    return (
        f"Worse than GIFT (beta = eta) on {len(bad)} of {n} instances (median KL "
        f"{_fmt(mine['median'])} vs GIFT's {_fmt(gift['median'])}), at eta "
        f"{', '.join(f'{e:g}' for e in etas)} and gold ranks {', '.join(f'{g:g}' for g in golds)}."
    )
