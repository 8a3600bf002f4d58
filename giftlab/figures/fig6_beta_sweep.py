"""Figure 6, final reward against beta: GIFT initialisations over beta, then the same sampled GRPO
budget, mean and spread over problem seeds (loglinear simulator). Is it unimodal in beta?

SFT (beta = inf) is drawn as a horizontal line. GRPO: group 8, no KL, advantages not divided by std.
"""

import sys

import numpy as np

from giftlab.figures._args import figure_args
from giftlab.plots import caption, lines, panels
from giftlab.provenance import write_csv
from giftlab.theory.simulator import (
    Policy,
    fit_initialisation,
    grpo_step,
    initial_targets,
    make_problem,
)


def main(argv=None):
    args = figure_args(__doc__.splitlines()[0], argv)
    betas = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 25.0] if not args.quick else [0.0, 2.0, 5.0, 25.0]
    seeds = range(5 if not args.quick else 2)
    rl_steps = 150 if not args.quick else 15
    rows = []
    for seed in seeds:
        prob = make_problem(seed=seed)
        base = Policy.loglinear(prob)
        prompts = np.arange(prob.n_train)
        inits = {
            b: fit_initialisation(base, initial_targets(prob, "gift", b), prompts, max_steps=300)[0]
            for b in betas
        }
        inits[np.inf] = fit_initialisation(
            base, initial_targets(prob, "sft"), prompts, max_steps=300
        )[0]
        for b, pol in inits.items():
            rng = np.random.default_rng(1000 + seed)
            for _ in range(rl_steps):
                pol = grpo_step(pol, lr=1.0, group=8, rng=rng)
            c = (pol.probs() * prob.reward).sum(1)
            rows.append(
                {
                    "seed": seed,
                    "beta": b,
                    "train_reward": float(c[: prob.n_train].mean()),
                    "heldout_reward": float(c[prob.n_train :].mean()),
                }
            )
    write_csv(args.out / "fig6_beta_sweep.csv", rows)
    fig, (ax,) = panels(1, width=6.0)
    series, band = {}, {}
    for split in ("train_reward", "heldout_reward"):
        m = np.array([[r[split] for r in rows if r["beta"] == b] for b in betas])
        series[split], band[split] = m.mean(1), (m.mean(1) - m.std(1), m.mean(1) + m.std(1))
    lines(
        ax,
        betas,
        series,
        "GIFT beta of the initialisation",
        "expected reward after RL",
        f"mean +- std over {len(seeds)} seeds; dotted: SFT start",
        band=band,
    )
    for line, split in zip(ax.lines[:2], ("train_reward", "heldout_reward")):
        sft = np.mean([r[split] for r in rows if r["beta"] == np.inf])
        ax.axhline(sft, color=line.get_color(), ls=":", lw=1)
    caption(fig, f"Final reward against beta after {rl_steps} GRPO steps (group 8)")
    fig.savefig(args.out / "fig6_beta_sweep.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
