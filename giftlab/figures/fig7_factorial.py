"""Figure 7, the deciding simulator experiment: in which settings does a GIFT start beat an SFT start
after the same RL, and is the effect unimodal in beta? (loglinear simulator, exact RL)

A factorial over the settings the earlier variants pointed to:
  demo      which correct answer is demonstrated: the base's favourite, a random one, the least likely
  memorise  a demonstration-specific feature block that does not transfer to held-out prompts (0 / 1)
  fit       fixed steps, or the iterate with the lowest held-out one-hot CE (the paper's rule)
  kl        RL with no KL, or KL to the base (coefficient 0.1)
  budget    the RL budget: 50 or 300 exact policy-gradient steps (read along one run)
Starts per seed: SFT and GIFT at beta in {0, 1, 3, 10}; each GIFT start minus SFT on the same seed,
on held-out reward and held-out pass@16, with 95% t-intervals over 40 problem seeds per cell.

Verdict per cell and budget:
  unimodal       an interior beta (1, 3 or 10) is reliably above SFT and above beta = 0 on reward
  above SFT, not unimodal   an interior beta is reliably above SFT on reward, beta = 0 not below it
  pass@k only    no beta above SFT on reward, but one reliably above it on pass@16
  SFT better     the best beta is reliably below SFT on reward, and none helps pass@16
  nothing        nothing separates at this budget
Writes fig7_factorial.csv (every run), fig7_factorial_summary.csv (paired differences) and
fig7_factorial_verdicts.csv (one row per cell and budget).
"""

import itertools
import sys

import numpy as np

from giftlab.figures._args import figure_args
from giftlab.plots import caption, panels
from giftlab.provenance import write_csv
from giftlab.stats import minimum_detectable_paired_difference, paired_difference, summary_row
from giftlab.theory import simulator as sim

BETAS = (0.0, 1.0, 3.0, 10.0)
INTERIOR = (1.0, 3.0, 10.0)
BUDGETS = (50, 300)
FACTORS = {
    "demo": ("favourite", "random", "least"),
    "memorise": (0.0, 1.0),
    "fit": ("fixed", "val_ce"),
    "kl": (0.0, 0.1),
}


def _heldout(pol):
    prob = pol.problem
    c = (pol.probs() * prob.reward).sum(1)[prob.n_train :]
    return float(c.mean()), float(sim.exact_pass_at_k(c, [16]).mean())


def run_cell(seed, demo, memorise, fit, kl, fit_steps=300):
    """Held-out (reward, pass@16) after each budget, for SFT and every GIFT beta, one seed."""
    prob = sim.make_problem(seed=seed, demo=demo, memorise=memorise)
    base = sim.Policy.loglinear(prob)
    train, val = np.arange(prob.n_train), np.arange(prob.n_train, prob.n_prompts)
    starts = {"SFT": sim.initial_targets(prob, "sft")}
    starts |= {b: sim.initial_targets(prob, "gift", b) for b in BETAS}
    out = []
    for name, target in starts.items():
        pol = sim.fit_initialisation(
            base, target, train, max_steps=fit_steps, val_prompts=val if fit == "val_ce" else None
        )[0]
        for step in range(1, max(BUDGETS) + 1):
            pol = sim.policy_gradient_step(pol, lr=1.0, kl_coef=kl)
            if step in BUDGETS:
                reward, pass16 = _heldout(pol)
                out.append({"start": name, "budget": step, "reward": reward, "pass16": pass16})
    return out


def summarise(rows):
    """Paired differences against SFT per cell, budget and beta; and a verdict per cell/budget."""
    summary, verdicts = [], []
    key = ("demo", "memorise", "fit", "kl", "budget")
    cells = sorted({tuple(r[k] for k in key) for r in rows})
    for cell in cells:
        sub = [r for r in rows if tuple(r[k] for k in key) == cell]
        seeds = sorted({r["seed"] for r in sub})

        def values(start, metric, sub=sub, seeds=seeds):
            by = {r["seed"]: r[metric] for r in sub if r["start"] == start}
            return [by[s] for s in seeds]

        diffs = {}
        for b in BETAS:
            for metric in ("reward", "pass16"):
                d = paired_difference(values(b, metric), values("SFT", metric))
                diffs[(b, metric)] = d
                summary.append(
                    dict(zip(key, cell)) | {"beta": b, "metric": metric} | summary_row(d)
                )
        best = max(INTERIOR, key=lambda b: diffs[(b, "reward")]["mean"])
        above_beta0 = paired_difference(values(best, "reward"), values(0.0, "reward"))
        reward_up = [b for b in BETAS if diffs[(b, "reward")]["low"] > 0]
        pass_up = [b for b in BETAS if diffs[(b, "pass16")]["low"] > 0]
        if diffs[(best, "reward")]["low"] > 0 and above_beta0["low"] > 0:
            verdict = "unimodal"
        elif diffs[(best, "reward")]["low"] > 0:
            verdict = "above SFT, not unimodal"
        elif not reward_up and pass_up:
            verdict = "pass@k only"
        elif diffs[(best, "reward")]["high"] < 0 and not pass_up:
            verdict = "SFT better"
        else:
            verdict = "nothing"
        d = diffs[(best, "reward")]
        verdicts.append(
            dict(zip(key, cell))
            | {
                "best_beta": best,
                "reward_diff": d["mean"],
                "low": d["low"],
                "high": d["high"],
                "mdd": minimum_detectable_paired_difference(d["sd"], d["n"]),
                "n": d["n"],
                "pass16_best_beta": max(BETAS, key=lambda b: diffs[(b, "pass16")]["mean"]),
                "verdict": verdict,
            }
        )
    return summary, verdicts


def main(argv=None):
    args = figure_args(__doc__.splitlines()[0], argv)
    seeds = range(3 if args.quick else 40)
    fit_steps = 60 if args.quick else 300
    rows = []
    for demo, memorise, fit, kl in itertools.product(*FACTORS.values()):
        for seed in seeds:
            for r in run_cell(seed, demo, memorise, fit, kl, fit_steps):
                rows.append(
                    {"demo": demo, "memorise": memorise, "fit": fit, "kl": kl, "seed": seed} | r
                )
    write_csv(args.out / "fig7_factorial.csv", rows)
    summary, verdicts = summarise(rows)
    write_csv(args.out / "fig7_factorial_summary.csv", summary)
    write_csv(args.out / "fig7_factorial_verdicts.csv", verdicts)
    colors = {
        "unimodal": "C2",
        "above SFT, not unimodal": "C0",
        "pass@k only": "C1",
        "SFT better": "C3",
        "nothing": "C7",
    }
    fig, axes = panels(2, width=6.0, height=0.22 * len(verdicts) + 1.6)
    labels = [
        f"{v['demo'][:4]} mem{v['memorise']:g} {v['fit']} kl{v['kl']:g} T{v['budget']}"
        for v in verdicts
    ]
    y = np.arange(len(verdicts))
    for ax, metric in zip(axes, ("reward", "pass16")):
        for i, v in enumerate(verdicts):
            b = v["best_beta"] if metric == "reward" else v["pass16_best_beta"]
            r = next(
                s
                for s in summary
                if s["metric"] == metric
                and s["beta"] == b
                and all(s[k] == v[k] for k in ("demo", "memorise", "fit", "kl", "budget"))
            )
            ax.errorbar(
                r["diff_mean"],
                i,
                xerr=[[r["diff_mean"] - r["low"]], [r["high"] - r["diff_mean"]]],
                fmt="o",
                ms=3,
                capsize=2,
                color=colors[v["verdict"]],
            )
            ax.annotate(
                f"b={b:g}", (r["high"], i), xytext=(3, -3), textcoords="offset points", fontsize=6
            )
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y, labels if metric == "reward" else [""] * len(y), fontsize=6)
        ax.set_xlabel(
            f"held-out {'reward' if metric == 'reward' else 'pass@16'}: best GIFT beta - SFT"
        )
        ax.grid(alpha=0.3)
    axes[0].set_title(
        "colour: verdict (green unimodal, blue above SFT not unimodal, orange pass@k only, red SFT better, grey nothing)",
        fontsize=8,
    )
    caption(
        fig,
        f"The factorial: best GIFT beta minus SFT per cell, {len(seeds)} seeds, 95% t-intervals",
    )
    fig.savefig(args.out / "fig7_factorial.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
