"""Figure 1, the gate: GIFT's target gold mass and mixture weight w against beta, per base probability.

q(y) = p e^beta / (1 + (e^beta - 1) p),  w = (e^beta - 1) p / (1 + (e^beta - 1) p)   (docs/theory.md 3b)
"""

import sys

import numpy as np

from giftlab.figures._args import figure_args
from giftlab.plots import caption, lines, panels
from giftlab.provenance import write_csv
from giftlab.theory.gift import gate_weight, gift_target


def main(argv=None):
    args = figure_args(__doc__.splitlines()[0], argv)
    betas = np.linspace(0, 30, 61 if args.quick else 301)
    probs = [1e-8, 1e-4, 1e-2, 0.1, 0.5]
    rows, mass, gate = [], {}, {}
    for p in probs:
        base = np.array([[p, 1 - p]])
        m = [float(gift_target(base, np.array([0]), b)[0, 0]) for b in betas]
        w = [float(gate_weight(p, b)) for b in betas]
        mass[f"p = {p:g}"], gate[f"p = {p:g}"] = m, w
        rows += [
            {"base_gold_prob": p, "beta": float(b), "target_gold_mass": mm, "gate_w": ww}
            for b, mm, ww in zip(betas, m, w)
        ]
    write_csv(args.out / "fig1_gate.csv", rows)
    fig, (a, b) = panels(2)
    lines(
        a,
        betas,
        mass,
        "beta (inverse temperature, 1/reward)",
        "target gold mass q(y*)",
        "GIFT target on the gold token",
    )
    lines(
        b,
        betas,
        gate,
        "beta (inverse temperature, 1/reward)",
        "gate w = weight of SFT",
        "q = (1 - w) pi0 + w onehot",
    )
    b.axvline(20, color="k", ls=":", lw=1)
    b.text(20.3, 0.05, "beta = 20\n(reference default)", fontsize=7)
    caption(
        fig,
        "The gate: GIFT departs from SFT only where the base finds the gold token unlikely (p < ~e^-beta)",
    )
    fig.savefig(args.out / "fig1_gate.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
