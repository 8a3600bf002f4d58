"""Figure 5, pass@k before and after RL per initialisation (loglinear simulator, exact pass@k).

Initialisations fitted on the demonstrated prompts (SFT to convergence, GIFT at beta), then the same
RL budget (exact policy gradient on expected reward, no KL, as in the reference experiments).
pass@k = 1 - (1 - P(correct))^k per prompt, averaged; held-out prompts were never demonstrated.
"""

import sys

import numpy as np

from giftlab.figures._args import figure_args
from giftlab.plots import caption, lines, panels
from giftlab.provenance import write_csv
from giftlab.theory.simulator import (
    Policy,
    exact_pass_at_k,
    fit_initialisation,
    initial_targets,
    make_problem,
    policy_gradient_step,
)


def initialisations(prob, betas=(2.0, 5.0), fit_steps=500):
    base = Policy.loglinear(prob)
    prompts = np.arange(prob.n_train)
    out = {
        "base": base,
        "SFT": fit_initialisation(base, initial_targets(prob, "sft"), prompts, max_steps=fit_steps)[
            0
        ],
    }
    for b in betas:
        out[f"GIFT beta={b:g}"] = fit_initialisation(
            base, initial_targets(prob, "gift", b), prompts, max_steps=fit_steps
        )[0]
    return out


def main(argv=None):
    args = figure_args(__doc__.splitlines()[0], argv)
    prob = make_problem(seed=0)
    rl_steps = 30 if args.quick else 200
    ks = np.arange(1, 65)
    rows = []
    curves = {"train": {}, "heldout": {}}
    for name, pol in initialisations(prob, fit_steps=100 if args.quick else 500).items():
        after = pol
        for _ in range(rl_steps):
            after = policy_gradient_step(after, lr=1.0)
        for stage, p in (("before RL", pol), ("after RL", after)):
            c = (p.probs() * prob.reward).sum(1)
            for split, sl in (
                ("train", slice(0, prob.n_train)),
                ("heldout", slice(prob.n_train, None)),
            ):
                curve = exact_pass_at_k(c[sl], ks).mean(0)
                curves[split][f"{name}, {stage}"] = curve
                rows += [
                    {
                        "init": name,
                        "stage": stage,
                        "split": split,
                        "k": int(k),
                        "pass_at_k": float(v),
                    }
                    for k, v in zip(ks, curve)
                ]
    write_csv(args.out / "fig5_passk.csv", rows)
    fig, axes = panels(2, width=5.4, height=4.0)
    colors = {n: f"C{i}" for i, n in enumerate(["base", "SFT", "GIFT beta=2", "GIFT beta=5"])}
    for ax, split in zip(axes, ("train", "heldout")):
        styles = {
            lab: {"color": colors[lab.split(",")[0]], "ls": "-" if "after" in lab else "--"}
            for lab in curves[split]
        }
        lines(
            ax,
            ks,
            curves[split],
            "k (samples)",
            "pass@k",
            f"{split} prompts (dashed: before RL, solid: after)",
            logx=True,
            styles=styles,
        )
    caption(
        fig,
        f"pass@k before and after {rl_steps} exact policy-gradient RL steps (40 prompts, 12 answers, 3 correct)",
    )
    fig.savefig(args.out / "fig5_passk.png", dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
