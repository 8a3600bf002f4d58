"""Figure 5, pass@k before and after RL as the comparison the claim is about: each start's pass@k
minus the SFT start's, paired by problem seed, with 95% intervals (loglinear simulator, exact pass@k).

Starts fitted on the demonstrated prompts (SFT to convergence, GIFT at beta, and the base itself),
then the same RL budget (exact policy gradient on expected reward, no KL, as in the reference
experiments). pass@k = 1 - (1 - P(correct))^k per prompt, averaged; held-out prompts were never
demonstrated. Writes fig5_passk.csv (every seed, start, stage, split, k) and fig5_passk_summary.csv
(paired differences against SFT: mean, 95% t-interval, wins/n).
"""

import sys

import numpy as np

from giftlab.figures._args import figure_args
from giftlab.plots import caption, lines, panels
from giftlab.provenance import write_csv
from giftlab.stats import paired_difference, summary_row
from giftlab.theory.simulator import (
    Policy,
    exact_pass_at_k,
    fit_initialisation,
    initial_targets,
    make_problem,
    policy_gradient_step,
)

KS = np.arange(1, 65)
SUMMARY_KS = (1, 2, 4, 8, 16, 32, 64)
STARTS = ["base", "SFT", "GIFT beta=2", "GIFT beta=5"]


def initialisations(prob, betas=(2.0, 5.0), fit_steps=500):
    base = Policy.loglinear(prob)
    prompts = np.arange(prob.n_train)
    out = {"base": base}
    out["SFT"] = fit_initialisation(
        base, initial_targets(prob, "sft"), prompts, max_steps=fit_steps
    )[0]
    for b in betas:
        target = initial_targets(prob, "gift", b)
        out[f"GIFT beta={b:g}"] = fit_initialisation(base, target, prompts, max_steps=fit_steps)[0]
    return out


def curves_for_seed(seed, rl_steps, fit_steps):
    """{(start, stage, split): pass@k curve over KS} for one problem seed."""
    prob = make_problem(seed=seed)
    out = {}
    for name, pol in initialisations(prob, fit_steps=fit_steps).items():
        after = pol
        for _ in range(rl_steps):
            after = policy_gradient_step(after, lr=1.0)
        for stage, p in (("before RL", pol), ("after RL", after)):
            c = (p.probs() * prob.reward).sum(1)
            for split, sl in (
                ("train", slice(0, prob.n_train)),
                ("heldout", slice(prob.n_train, None)),
            ):
                out[(name, stage, split)] = exact_pass_at_k(c[sl], KS).mean(0)
    return out


def main(argv=None):
    args = figure_args(__doc__.splitlines()[0], argv)
    rl_steps = 30 if args.quick else 200
    seeds = range(3 if args.quick else 10)
    per_seed = {s: curves_for_seed(s, rl_steps, 100 if args.quick else 500) for s in seeds}
    rows = [
        {
            "seed": s,
            "init": name,
            "stage": stage,
            "split": split,
            "k": int(k),
            "pass_at_k": float(v),
        }
        for s, curves in per_seed.items()
        for (name, stage, split), curve in curves.items()
        for k, v in zip(KS, curve)
    ]
    write_csv(args.out / "fig5_passk.csv", rows)
    summary, diff_curves = [], {}
    for name in STARTS:
        if name == "SFT":
            continue
        for stage in ("before RL", "after RL"):
            for split in ("train", "heldout"):
                a = np.array([per_seed[s][(name, stage, split)] for s in seeds])  # (seeds, K)
                b = np.array([per_seed[s][("SFT", stage, split)] for s in seeds])
                ds = [paired_difference(a[:, i], b[:, i]) for i in range(len(KS))]
                diff_curves[(name, stage, split)] = ds
                summary += [
                    {
                        "init": name,
                        "stage": stage,
                        "split": split,
                        "k": int(KS[i]),
                    }
                    | summary_row(ds[i])
                    | {"init_mean": float(a[:, i].mean()), "sft_mean": float(b[:, i].mean())}
                    for i in range(len(KS))
                    if KS[i] in SUMMARY_KS
                ]
    write_csv(args.out / "fig5_passk_summary.csv", summary)
    fig, axes = panels(2, width=5.4, height=4.0)
    colors = {n: f"C{i}" for i, n in enumerate(STARTS)}
    for ax, stage in zip(axes, ("before RL", "after RL")):
        series, band, styles = {}, {}, {}
        for name in STARTS:
            if name == "SFT":
                continue
            ds = diff_curves[(name, stage, "heldout")]
            series[name] = [d["mean"] for d in ds]
            band[name] = ([d["low"] for d in ds], [d["high"] for d in ds])
            styles[name] = {"color": colors[name]}
        lines(
            ax,
            KS,
            series,
            "k (samples)",
            "held-out pass@k minus SFT's",
            f"{stage}; paired over {len(seeds)} seeds, 95% band",
            logx=True,
            styles=styles,
            band=band,
        )
        ax.axhline(0.0, color="k", lw=0.8)
    caption(
        fig,
        f"pass@k of each start minus the SFT start, before and after {rl_steps} exact "
        "policy-gradient steps (40 prompts, 12 answers, 3 correct)",
    )
    fig.savefig(args.out / "fig5_passk.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
