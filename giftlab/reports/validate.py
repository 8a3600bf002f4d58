"""`giftlab validate`'s output: report.md, validate.csv (one row per instance) and validate.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from giftlab.theory.validate import Validation


def _fmt(x: float) -> str:
    return f"{x:.2e}"


def write_validation(v: Validation, name: str, out: Path) -> Path:
    """Write the three files into `out` (made before this is called); returns report.md."""
    from giftlab.plots import caption, lines, panels
    from giftlab.provenance import write_csv

    csv_rows = [{k: x for k, x in r.items() if not k.startswith("gains_")} for r in v.rows]
    write_csv(out / "validate.csv", csv_rows)
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
    lines(a, etas, series, "eta", "largest KL(induced || exact)", "", logx=True, logy=True)
    a.axhline(max(v.tolerance, 1e-18), color="k", ls=":", lw=1)
    w = v.search if v.search and v.search["kl"] > v.worst["kl"] else v.worst
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
    fig.savefig(out / "validate.png", dpi=110)
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
    limit0 = max(r["limit_zero_gap"] for r in v.rows)
    limit_inf = max(r["limit_inf_gap"] for r in v.rows)
    search = (
        f"Hypothesis search (targeted at the KL, inside the grid's bounds): worst KL "
        f"{_fmt(v.search['kl'])} at `{replay_text(v.search)}`."
        if v.search
        else "Hypothesis is not installed: no search beyond the grid."
    )
    text = [
        f"# giftlab validate {name}",
        "",
        f"**{'PASS' if v.passed else 'FAIL'}** at tolerance {v.tolerance:g} on KL(induced || "
        f"exact): worst grid instance KL {_fmt(v.worst['kl'])} at `{replay_text(v.worst)}`.",
        "",
        search,
        "",
        f"Limits: eta -> 0 gives the base (max |q - pi0| = {_fmt(limit0)} at eta = 1e-8); "
        f"eta -> inf gives one-hot SFT (max |q - onehot| = {_fmt(limit_inf)} at eta = 200).",
        "",
        "Stationarity: the gradient of the variant's loss at the exact soft-Bellman policy is "
        "pi* - q at each gold prefix; its largest entry per cell is the last column (0: the exact "
        "policy is a stationary point).",
        "",
        *table,
        "",
        "![validate](validate.png)",
        "",
        "Replay one instance: `giftlab validate MODULE:FUNCTION --replay '<instance>'`.",
        "",
    ]
    (out / "report.md").write_text("\n".join(text))
    return out / "report.md"


def replay_text(row: dict) -> str:
    keys = ("vocab", "horizon", "concentration", "eta", "seed", "gold")
    return ",".join(f"{k}={row[k]!r}" for k in keys)
