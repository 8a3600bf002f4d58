"""Figure 4, the bridge: exact KL-regularised RL from SFT, GIFT and Gibbs starts; distance to the
global optimum pi0 exp(eta r) / Z per RL step (tabular simulator, docs/theory.md 3c).

RL maximises E[r] - KL(pi || pi_init) / lam_rl by exact policy gradient. The *oracle* start
pi0 exp(beta r) is given the verifier's reward on every answer, so with beta = eta - lam_rl it
reaches the optimum by construction (the theory's statement, not a method). The starts a method can
build see only the demonstrations: SFT (one-hot), GIFT at beta (fitted), and the exact Gibbs tilt of
the demonstration, pi0 exp(beta 1[y = demo]). One random instance (12 prompts, 8 answers, 3
correct, seed 2). Right: expected reward along the same runs.
"""

import sys

import numpy as np

from giftlab.figures._args import figure_args
from giftlab.plots import caption, lines, panels
from giftlab.provenance import write_csv
from giftlab.theory.bandit import gibbs_policy, kl_divergence
from giftlab.theory.simulator import (
    Policy,
    fit_initialisation,
    global_optimum,
    initial_targets,
    make_problem,
    policy_gradient_step,
)


def main(argv=None):
    args = figure_args(__doc__.splitlines()[0], argv)
    eta, lam_rl = 3.0, 1.0
    beta = eta - lam_rl
    prob = make_problem(n_prompts=12, n_answers=8, n_correct=3, n_train=12, seed=2)
    prompts = np.arange(prob.n_train)
    base = Policy.tabular(prob)
    steps = 150 if args.quick else 1500
    starts = {
        "SFT (one-hot demo)": fit_initialisation(
            base, initial_targets(prob, "sft"), prompts, max_steps=400
        )[0],
        f"GIFT beta = {beta:g} (demo only)": fit_initialisation(
            base, initial_targets(prob, "gift", beta), prompts, max_steps=400
        )[0],
        f"Gibbs of the demo, pi0 exp({beta:g} 1[demo])": _from_probs(
            base, gibbs_policy(prob.base_probs, _demo_reward(prob), beta)
        ),
        f"oracle: pi0 exp({beta:g} r), verifier on every answer": _from_probs(
            base, gibbs_policy(prob.base_probs, prob.reward, beta)
        ),
    }
    optimum = global_optimum(prob, eta)
    rows, series, rewards, limits = [], {}, {}, {}
    for name, pol in starts.items():
        init = pol.probs()
        dist, rew = [], []
        for step in range(steps + 1):
            d = float(kl_divergence(pol.probs(), optimum).mean())
            dist.append(d)
            rew.append(float((pol.probs() * prob.reward).sum(1).mean()))
            rows.append(
                {
                    "start": name,
                    "step": step,
                    "kl_to_optimum": d,
                    "reward": float((pol.probs() * prob.reward).sum(1).mean()),
                }
            )
            pol = policy_gradient_step(pol, lr=20.0, kl_coef=1.0 / lam_rl, kl_ref=init)
        limit = gibbs_policy(init, prob.reward, lam_rl)  # the exact RL optimum from this start
        series[name], rewards[name] = dist, rew
        limits[name] = float(kl_divergence(limit, optimum).mean())
        rows.append(
            {
                "start": name,
                "step": -1,
                "kl_to_optimum": float(kl_divergence(limit, optimum).mean()),
                "reward": float((limit * prob.reward).sum(1).mean()),
            }
        )
    write_csv(args.out / "fig4_bridge.csv", rows)
    fig, (a, b) = panels(2, width=6.2, height=4.4)
    lines(
        a,
        np.arange(steps + 1),
        series,
        "RL step (exact policy gradient)",
        "mean KL(pi_t || pi*_eta) (nats)",
        f"eta = {eta:g}, lam_rl = {lam_rl:g}; dotted: each start's exact RL limit (drawn if > 1e-12)",
        logy=True,
    )
    for line, name in zip(a.lines[: len(series)], series):
        if limits[name] > 1e-12:  # the oracle's limit is 0 up to round-off: no line, no clamp
            a.axhline(limits[name], color=line.get_color(), ls=":", lw=1)
    opt_reward = float((optimum * prob.reward).sum(1).mean())
    lines(
        b,
        np.arange(steps + 1),
        rewards,
        "RL step (exact policy gradient)",
        "expected reward E[r]",
        f"dashed: the optimum's E[r] = {opt_reward:.3f}",
    )
    b.axhline(opt_reward, color="k", ls="--", lw=0.8)
    caption(
        fig,
        "The bridge (one instance): only the oracle start (verifier on every answer) reaches the "
        "optimum; SFT is absorbing",
    )
    fig.savefig(args.out / "fig4_bridge.png", dpi=120)


def _demo_reward(prob):
    """1 on each prompt's demonstrated answer, 0 elsewhere: all a method sees of the reward."""
    r = np.zeros_like(prob.reward)
    r[np.arange(len(prob.demo)), prob.demo] = 1.0
    return r


def _from_probs(policy, probs):
    """A tabular policy whose logits equal log probs (w = log probs - log pi0)."""
    pol = policy.copy()
    pol.w = (np.log(probs) - np.log(policy.problem.base_probs)).ravel()
    return pol


if __name__ == "__main__":
    main(sys.argv[1:])
