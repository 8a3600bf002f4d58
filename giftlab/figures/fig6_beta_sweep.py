"""Figure 6, the beta sweep as the comparison the claim is about: reward after the same GRPO budget
of a GIFT(beta) start minus an SFT start, paired by problem seed, with 95% intervals (loglinear
simulator). The paper's unimodality claim needs an interior beta reliably above SFT, both ends below.

GRPO: group 8, no KL, advantages not divided by the std. Writes fig6_beta_sweep.csv (every seed and
start) and fig6_beta_sweep_summary.csv (paired differences: mean, 95% t-interval, wins/n).
"""

import sys

import numpy as np

from giftlab.figures._args import figure_args
from giftlab.plots import caption, intervals, panels
from giftlab.provenance import write_csv
from giftlab.stats import paired_difference, summary_row
from giftlab.theory.simulator import (
    Policy,
    fit_initialisation,
    grpo_step,
    initial_targets,
    make_problem,
)

SPLITS = {"train_reward": "demonstrated prompts", "heldout_reward": "held-out prompts"}


def sweep(betas, seeds, rl_steps, fit_steps=300):
    rows = []
    for seed in seeds:
        prob = make_problem(seed=seed)
        base = Policy.loglinear(prob)
        prompts = np.arange(prob.n_train)
        targets = {b: initial_targets(prob, "gift", b) for b in betas}
        targets[np.inf] = initial_targets(prob, "sft")
        for b, target in targets.items():
            pol = fit_initialisation(base, target, prompts, max_steps=fit_steps)[0]
            rng = np.random.default_rng(1000 + seed)  # the same RL noise for every start
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
    return rows


def paired_summary(rows, betas):
    out = []
    for split in SPLITS:
        sft = {r["seed"]: r[split] for r in rows if r["beta"] == np.inf}
        seeds = sorted(sft)
        for b in betas:
            gift = {r["seed"]: r[split] for r in rows if r["beta"] == b}
            d = paired_difference([gift[s] for s in seeds], [sft[s] for s in seeds])
            out.append(
                {
                    "split": split,
                    "beta": b,
                }
                | summary_row(d)
                | {"sft_mean": float(np.mean([sft[s] for s in seeds]))}
            )
    return out


def main(argv=None):
    args = figure_args(__doc__.splitlines()[0], argv)
    betas = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 25.0] if not args.quick else [0.0, 2.0, 25.0]
    seeds = range(10 if not args.quick else 3)
    rl_steps = 150 if not args.quick else 15
    rows = sweep(betas, seeds, rl_steps)
    write_csv(args.out / "fig6_beta_sweep.csv", rows)
    summary = paired_summary(rows, betas)
    write_csv(args.out / "fig6_beta_sweep_summary.csv", summary)
    fig, (ax,) = panels(1, width=6.4)
    series = {
        label: tuple(
            np.array([r[k] for r in summary if r["split"] == split])
            for k in ("diff_mean", "low", "high")
        )
        for split, label in SPLITS.items()
    }
    intervals(
        ax,
        betas,
        series,
        "GIFT beta of the start (symlog)",
        "reward after RL: GIFT(beta) - SFT",
        f"paired over {len(seeds)} problem seeds; bars: 95% t-interval",
        symlogx=1.0,
        offset=0.04,
    )
    caption(
        fig, f"Reward after {rl_steps} GRPO steps (group 8), each GIFT start minus the SFT start"
    )
    fig.savefig(args.out / "fig6_beta_sweep.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
