"""The numbers behind `giftlab solve`: exact Gibbs against GIFT on one TabularLM instance."""

from __future__ import annotations

import numpy as np

from giftlab.theory.bandit import entropy, kl_divergence
from giftlab.theory.gift import (
    exact_gains,
    gate_weight,
    gift_target,
    gold_index,
    gold_path,
    gold_path_policy,
    gold_reward,
    smoothed_base,
)
from giftlab.theory.tabular import TabularLM, sequence_gibbs


def sample_sequence(lm: TabularLM, seed: int) -> np.ndarray:
    """One complete sequence drawn from the base (a plausible demonstration), -1 padded."""
    probs = np.exp(lm.sequence_log_probs())
    return lm.sequences()[np.random.default_rng(seed).choice(lm.n_sequences, p=probs / probs.sum())]


def verifier_reward(lm: TabularLM, gold, correct_fraction: float, seed: int) -> np.ndarray:
    """(N,) 0/1 reward: 1 for the gold sequence and for a random `correct_fraction` of the others
    (several correct answers, of which the demonstration shows one)."""
    if not 0.0 <= correct_fraction <= 1.0:
        raise ValueError(f"correct_fraction must be in [0, 1], got {correct_fraction}")
    is_gold = gold_reward(lm, gold) > 0
    others = np.random.default_rng(seed + 1).uniform(size=lm.n_sequences) < correct_fraction
    return (is_gold | others).astype(np.float64)


def solve_report(
    lm: TabularLM,
    gold,
    betas,
    eta: float,
    *,
    reward=None,
    smoothing: float = 0.0,
) -> dict:
    """Per beta: exact Gibbs vs GIFT-induced sequence distributions; along the gold path: gains.

    The exact policy is pi0 exp(beta r) / Z for `reward` (default 1[y = y*]); the GIFT policy
    uses GIFT's target at the gold prefixes and pi0 elsewhere (a model that fits the target).
    """
    idx, base, tokens = gold_path(lm, gold)
    gi = gold_index(lm, gold)
    r = np.zeros(lm.n_sequences) if reward is None else lm.check_sequence_array(reward)
    if reward is None:
        r[gi] = 1.0
    base_seq = np.exp(lm.sequence_log_probs())
    rows = []
    for beta in betas:
        exact = sequence_gibbs(lm, r, beta)
        gift_tables = gold_path_policy(lm, gold, gift_target(base, tokens, beta, smoothing))
        gift = np.exp(lm.sequence_log_probs(gift_tables))
        rows.append(
            {
                "beta": float(beta),
                "exact_gold_mass": float(exact[gi]),
                "gift_gold_mass": float(gift[gi]),
                "exact_entropy": float(entropy(exact)),
                "gift_entropy": float(entropy(gift)),
                "exact_kl_to_base": float(kl_divergence(exact, base_seq)),
                "gift_kl_to_base": float(kl_divergence(gift, base_seq)),
                "exact_reward": float(exact @ r),
                "gift_reward": float(gift @ r),
                "kl_gift_to_exact": float(kl_divergence(gift, exact)),
            }
        )
    p_gold = smoothed_base(base, smoothing)[np.arange(len(tokens)), tokens]
    with np.errstate(divide="ignore"):
        gains = exact_gains(np.log(p_gold), eta)
    path = [
        {
            "t": t,
            "token": int(tokens[t]),
            "base_gold_prob": float(p_gold[t]),
            "gift_gain": float(eta),
            "exact_gain": float(gains[t]),
            "gate_w": float(gate_weight(p_gold[t], eta)),
        }
        for t in range(len(tokens))
    ]
    return {
        "instance": {
            "vocab_size": lm.vocab_size,
            "horizon": lm.horizon,
            "end_token": lm.end_token,
            "n_sequences": lm.n_sequences,
            "gold": [int(a) for a in tokens],
            "gold_base_prob": float(base_seq[gi]),
            "n_correct": int((r > 0).sum()),
            "smoothing": smoothing,
            "eta": float(eta),
        },
        "by_beta": rows,
        "gold_path": path,
    }


DEFAULT_BETAS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, float("inf"))
MAX_SEQUENCES = 2_000_000


def solve(
    vocab_size: int = 4,
    horizon: int = 4,
    end_token: int | None = None,
    seed: int = 0,
    concentration: float = 0.5,
    gold=None,
    betas=DEFAULT_BETAS,
    eta: float = 5.0,
    smoothing: float = 0.0,
    correct_fraction: float = 0.0,
) -> dict:
    """`giftlab solve`: a random TabularLM, a demonstration (a base sample unless `gold`), and
    solve_report for it; the instance also records seed and concentration."""
    lm = TabularLM.random(
        vocab_size, horizon, seed=seed, concentration=concentration, end_token=end_token
    )
    if lm.n_sequences > MAX_SEQUENCES:
        raise ValueError(
            f"--vocab-size {vocab_size} --horizon {horizon} gives {lm.n_sequences} sequences; "
            f"the report enumerates them: keep it under {MAX_SEQUENCES:,}"
        )
    gold = sample_sequence(lm, seed) if gold is None else gold
    reward = verifier_reward(lm, gold, correct_fraction, seed) if correct_fraction > 0 else None
    report = solve_report(lm, gold, betas, eta, reward=reward, smoothing=smoothing)
    report["instance"] |= {"seed": seed, "concentration": concentration}
    return report


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """rows of dicts -> aligned text; columns = (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append([format(row[k], f) if f else str(row[k]) for k, _, f in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_solve_report(report: dict) -> str:
    """The text `giftlab solve` prints: the instance, the by-beta table, the gold-path gains."""
    inst = report["instance"]
    by_beta = format_table(
        report["by_beta"],
        [
            ("beta", "beta", "g"),
            ("exact_gold_mass", "gold mass", ".4f"),
            ("gift_gold_mass", "GIFT gold", ".4f"),
            ("exact_reward", "E[r]", ".4f"),
            ("gift_reward", "GIFT E[r]", ".4f"),
            ("exact_entropy", "H (nats)", ".3f"),
            ("gift_entropy", "GIFT H", ".3f"),
            ("exact_kl_to_base", "KL(.||pi0)", ".3f"),
            ("gift_kl_to_base", "GIFT KL", ".3f"),
            ("kl_gift_to_exact", "KL(GIFT||exact)", ".4f"),
        ],
    )
    gains = format_table(
        report["gold_path"],
        [
            ("t", "t", ""),
            ("token", "y*_t", ""),
            ("base_gold_prob", "pi0(y*_t)", ".4f"),
            ("gift_gain", "GIFT beta", ".3f"),
            ("exact_gain", "exact g_t", ".3f"),
            ("gate_w", "gate w_t", ".4f"),
        ],
    )
    return "\n".join(
        [
            f"TabularLM V={inst['vocab_size']} T={inst['horizon']} end={inst['end_token']} "
            f"({inst['n_sequences']} sequences), seed {inst.get('seed')}, concentration "
            f"{inst.get('concentration')}",
            f"gold y* = {inst['gold']}  (base probability {inst['gold_base_prob']:.3g}); "
            f"{inst['n_correct']} correct sequence(s); smoothing {inst['smoothing']}",
            "",
            "Exact Gibbs pi0 exp(beta r)/Z vs the GIFT-induced policy (target on gold prefixes, "
            "pi0 elsewhere)",
            by_beta,
            "",
            f"Along the gold path at eta = {inst['eta']:g}: GIFT's constant gain vs the exact "
            "g_t = log(1 + (e^eta - 1) pi0(y*_>t))",
            gains,
        ]
    )
