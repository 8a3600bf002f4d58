"""sympy proofs of the closed forms and limits in docs/theory.md; each returns True when proved.

These are symbolic, exact checks (no sampling): the tests call each one, and `giftlab solve`
can print them. Each function documents the identity it proves.
"""

from __future__ import annotations

import sympy as sp

__all__ = [
    "check_all",
    "check_gains_bounded_by_eta",
    "check_gold_mass_closed_form",
    "check_gold_mass_limit",
    "check_gate_weight",
    "check_reward_derivative",
]

beta, eta, p, s, tau = sp.symbols("beta eta p s tau", positive=True)


def _gold_mass(b, p_gold):
    return p_gold * sp.exp(b) / (1 + (sp.exp(b) - 1) * p_gold)


def check_gold_mass_closed_form() -> bool:
    """pi*_beta(a*) = pi0(a*) e^beta / (1 + (e^beta - 1) pi0(a*)) from the Gibbs definition,
    on a 3-action base (pi0 = p, p1, 1 - p - p1) with reward 1[a = a*] on the first action."""
    p1 = sp.symbols("p1", positive=True)
    base = [p, p1, 1 - p - p1]
    weights = [base[0] * sp.exp(beta), base[1], base[2]]
    gibbs = weights[0] / sum(weights)
    return sp.simplify(gibbs - _gold_mass(beta, p)) == 0


def check_gold_mass_limit() -> bool:
    """beta -> inf: the gold mass -> 1 for every p in (0, 1] (SFT is the zero-temperature limit);
    beta = 0: it equals p."""
    at_inf = sp.limit(_gold_mass(beta, p), beta, sp.oo)
    at_zero = sp.simplify(_gold_mass(0, p))
    return sp.simplify(at_inf - 1) == 0 and sp.simplify(at_zero - p) == 0


def check_gate_weight() -> bool:
    """q = (1 - w) pi0 + w onehot with w = (e^beta - 1) p / (1 + (e^beta - 1) p): both the gold
    entry and any other entry pi0(a) e^0 / Z match; and w = 1/2 at beta = log(1 + 1/p)."""
    pa = sp.symbols("p_a", positive=True)
    z = 1 + (sp.exp(beta) - 1) * p
    w = (sp.exp(beta) - 1) * p / z
    gold_ok = sp.simplify((1 - w) * p + w - p * sp.exp(beta) / z) == 0
    other_ok = sp.simplify((1 - w) * pa - pa / z) == 0
    half_ok = sp.simplify(w.subs(beta, sp.log(1 + 1 / p)) - sp.Rational(1, 2)) == 0
    return gold_ok and other_ok and half_ok


def check_gains_bounded_by_eta() -> bool:
    """g = log(1 + (e^eta - 1) s) with s = pi0(gold suffix) in [0, 1]: g = eta at s = 1 (the last
    token), dg/ds > 0, hence g <= eta, and g = 0 at s = 0."""
    g = sp.log(1 + (sp.exp(eta) - 1) * s)
    at_one = sp.simplify(g.subs(s, 1) - eta) == 0
    at_zero = sp.simplify(g.subs(s, 0)) == 0
    dg = sp.simplify(sp.diff(g, s))
    increasing = sp.simplify(dg - (sp.exp(eta) - 1) / (1 + (sp.exp(eta) - 1) * s)) == 0
    # e^eta - 1 > 0 for eta > 0: sympy proves it as e^eta > 1 via the solution set of e^x <= 1
    x = sp.symbols("x", real=True)
    positive = sp.solveset(sp.exp(x) - 1 <= 0, x, sp.Interval.open(0, sp.oo)) == sp.EmptySet
    return at_one and at_zero and increasing and positive


def check_reward_derivative() -> bool:
    """d/dtau E_{pi*_tau}[r] = -Var_{pi*_tau}(r) / tau^2, on a 3-action base with symbolic rewards."""
    q0, q1, r0, r1, r2 = sp.symbols("q0 q1 r0 r1 r2", positive=True)
    base = [q0, q1, 1 - q0 - q1]
    rewards = [r0, r1, r2]
    weights = [b * sp.exp(r / tau) for b, r in zip(base, rewards)]
    z = sum(weights)
    probs = [w / z for w in weights]
    mean = sum(pr * r for pr, r in zip(probs, rewards))
    var = sum(pr * r**2 for pr, r in zip(probs, rewards)) - mean**2
    return sp.simplify(sp.diff(mean, tau) + var / tau**2) == 0


def check_all() -> dict[str, bool]:
    """Every check by name."""
    return {
        f.__name__: f()
        for f in (
            check_gold_mass_closed_form,
            check_gold_mass_limit,
            check_gate_weight,
            check_gains_bounded_by_eta,
            check_reward_derivative,
        )
    }
