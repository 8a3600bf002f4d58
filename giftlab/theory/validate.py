"""Validate a token-level target variant against the exact sequence Gibbs policy.

A variant is a function `(base, tokens, eta) -> target`: base (L, V) the base probabilities at the
gold prefixes, tokens (L,) the gold path, target (L, V) rows that sum to 1. Trained with the
cross-entropy  L(pi) = -sum_t sum_a q_t(a) log pi(a | s*_t)  on the gold path, it induces the
policy "target at the gold prefixes, base elsewhere". The exact answer for the sequence reward
eta 1[y = y*] is  pi*(y) = pi0(y) exp(eta 1[y = y*]) / Z  (docs/theory.md, section 3). Per instance:

    kl          KL(induced || exact) over the V^T sequences
    gain_error  max_t |g_t(variant) - g_t(exact)|, g_t(q) = logit q(y*_t) - logit pi0(y*_t)
    stationary  max |pi*(.|s*_t) - q_t|: the gradient of L with respect to the logits at the
                exact soft-Bellman policy (0: the exact policy is a stationary point of L)
    limits      eta -> 0: max |q - pi0|;  eta -> inf: max |q - onehot(y*)|

`validate_variant` runs a seeded grid of instances, summarises each cell over seeds (mean KL with
a 95% t-interval clipped at 0), searches the grid's bounds with hypothesis (targeted at the KL) for
the worst instance, returned with a replay string, and runs the built-in targets (gift, gift_seq,
sft) on the same grid. The verdict passes only when all four checks pass: the worst KL within the
tolerance, both limits and the stationarity gap within 1e-6; beside it, the variant is ranked
against the built-ins by median KL and compared with GIFT instance by instance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from giftlab.errors import InputError
from giftlab.theory.gift import (
    compare_sequence_distributions,
    exact_gains,
    exact_gold_gibbs,
    gift_target,
    gold_path,
    gold_path_policy,
    gold_reward,
    sequence_consistent_gift_target,
)
from giftlab.theory.tabular import TabularLM, soft_bellman
from giftlab.variants import VariantError, load_variant  # noqa: F401 - re-exported

ETA_ZERO, ETA_INF = 1e-8, 200.0  # the two limits are checked at these eta


@dataclass(frozen=True)
class Instance:
    """One exact tabular instance: a random base (Dirichlet rows) and a gold path chosen by its
    rank under the base (gold = 0: the base's favourite sequence, 1: its least likely)."""

    vocab: int
    horizon: int
    concentration: float
    eta: float
    seed: int
    gold: float

    def replay(self) -> str:
        return ",".join(f"{k}={v!r}" for k, v in asdict(self).items())

    @classmethod
    def parse(cls, text: str) -> Instance:
        """The inverse of `replay`: 'vocab=4,horizon=5,concentration=0.3,eta=7.0,seed=1,gold=0.5'."""
        try:
            kv = dict(item.split("=", 1) for item in text.split(",") if item.strip())
            inst = cls(
                int(kv["vocab"]),
                int(kv["horizon"]),
                float(kv["concentration"]),
                float(kv["eta"]),
                int(kv["seed"]),
                float(kv["gold"]),
            )
        except (KeyError, ValueError) as err:
            raise InputError(
                f"--replay {text!r}: expected vocab=V,horizon=T,concentration=C,eta=E,seed=S,"
                f"gold=Q ({err})"
            ) from None
        bad = inst.problem()
        if bad:
            raise InputError(f"--replay {text!r}: {bad}")
        return inst

    def problem(self) -> str | None:
        """What makes this instance impossible, in words (None: it can be built)."""
        if (
            not 2 <= self.vocab <= 8
            or not 1 <= self.horizon <= 8
            or self.vocab**self.horizon > 10**6
        ):
            return "vocab must be in [2, 8], horizon in [1, 8], vocab^horizon at most 1e6"
        if not (math.isfinite(self.concentration) and self.concentration > 0):
            return f"concentration must be a finite number > 0, got {self.concentration}"
        if not (math.isfinite(self.eta) and self.eta >= 0):
            return f"eta must be a finite number >= 0, got {self.eta}"
        if not 0 <= self.gold <= 1 or self.seed < 0:
            return f"gold must be in [0, 1] and seed >= 0, got gold={self.gold}, seed={self.seed}"
        return None

    def build(self) -> tuple[TabularLM, np.ndarray]:
        lm = TabularLM.random(
            self.vocab, self.horizon, seed=self.seed, concentration=self.concentration
        )
        order = np.argsort(-lm.sequence_log_probs(), kind="stable")
        rank = int(round(self.gold * (len(order) - 1)))
        return lm, lm.sequences()[order[rank]]


@dataclass
class Grid:
    """The default grid: seconds on a 2-core CPU (3 x 2 x 2 x 5 x 3 cells x 3 seeds). eta reaches
    100, where a target that stops growing (min(eta, 20)) departs from the exact policy."""

    vocab: tuple = (2, 3, 4)
    horizon: tuple = (3, 5)
    concentration: tuple = (0.3, 1.0)
    eta: tuple = (0.01, 1.0, 5.0, 20.0, 100.0)
    gold: tuple = (0.0, 0.5, 1.0)
    seeds: tuple = (0, 1, 2)

    def instances(self) -> list[Instance]:
        return [
            Instance(v, t, c, e, s, g)
            for v in self.vocab
            for t in self.horizon
            for c in self.concentration
            for e in self.eta
            for g in self.gold
            for s in self.seeds
        ]


def call_variant(fn, base: np.ndarray, tokens: np.ndarray, eta: float, where: str) -> np.ndarray:
    """fn(base, tokens, eta), checked: (L, V), finite, >= 0, rows summing to 1 (|sum - 1| <= 1e-6)."""
    try:
        out = fn(base.copy(), tokens.copy(), float(eta))
    except Exception as err:  # noqa: BLE001 - any failure of the user's function is named
        raise VariantError(f"the variant raised {type(err).__name__} on {where}: {err}") from None
    try:
        q = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise VariantError(f"the variant returned {type(out).__name__}, not an array") from None
    if q.shape != base.shape:
        raise VariantError(f"the variant returned shape {q.shape}, expected {base.shape} ({where})")
    if not np.isfinite(q).all() or (q < 0).any():
        raise VariantError(f"the variant returned negative, NaN or infinite entries ({where})")
    sums = q.sum(-1)
    if np.abs(sums - 1).max() > 1e-6:
        t = int(np.abs(sums - 1).argmax())
        raise VariantError(f"the variant's row {t} sums to {sums[t]:.9g}, not 1 ({where})")
    return q / sums[:, None]


def gold_log_odds(probs: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """log q(y*_t) - log sum_{a != y*_t} q(a) per row: the complement is summed, not 1 - q, so a
    gold probability within 1e-12 of 1 keeps its precision."""
    rows = np.arange(len(tokens))
    other = probs.copy()
    other[rows, tokens] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(probs[rows, tokens]) - np.log(other.sum(-1))


def check_instance(fn, inst: Instance) -> dict:
    """Every measure of the module docstring on one instance (a flat dict, a CSV row)."""
    lm, gold = inst.build()
    _, base, tokens = gold_path(lm, gold)
    where = f"instance {inst.replay()}"
    q = call_variant(fn, base, tokens, inst.eta, where)
    induced = np.exp(lm.sequence_log_probs(gold_path_policy(lm, gold, q)))
    exact = exact_gold_gibbs(lm, gold, inst.eta)
    gi = int(np.flatnonzero(gold_reward(lm, gold))[0])
    cmp = compare_sequence_distributions(induced, exact, gi)
    rows = np.arange(len(tokens))
    p_gold = base[rows, tokens]
    g_exact = exact_gains(np.log(p_gold), inst.eta)
    g_var = gold_log_odds(q, tokens) - gold_log_odds(base, tokens)
    ok = np.isfinite(g_var) & np.isfinite(g_exact)
    sb = soft_bellman(lm, gold_reward(lm, gold, 1.0), inst.eta)
    idx, _, _ = gold_path(lm, gold)
    pi_exact = np.stack([sb.policy[d][i] for d, i in enumerate(idx)])
    q0 = call_variant(fn, base, tokens, ETA_ZERO, where + f" at eta={ETA_ZERO}")
    q_inf = call_variant(fn, base, tokens, ETA_INF, where + f" at eta={ETA_INF}")
    return asdict(inst) | {
        "kl": max(cmp["kl_to_exact"], 0.0),
        "tv": cmp["tv"],
        "gold_mass": cmp["gold_mass"],
        "gold_mass_exact": cmp["gold_mass_exact"],
        "gain_error": float(np.abs(g_var - g_exact)[ok].max()) if ok.any() else 0.0,
        "stationary_gap": float(np.abs(pi_exact - q).max()),
        "limit_zero_gap": float(np.abs(q0 - base).max()),
        "limit_inf_gap": float(np.abs(q_inf - np.eye(lm.vocab_size)[tokens]).max()),
        "gains_variant": g_var.tolist(),
        "gains_exact": g_exact.tolist(),
    }


def _mean_ci(values) -> tuple[float, float, float]:
    """Mean over seeds and its 95% t-interval, the lower end clipped at 0: a KL is never
    negative, so neither is a bound on its mean."""
    from scipy import stats as sps

    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2 or v.std() == 0:
        return m, m, m
    h = float(sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, max(m - h, 0.0), m + h


def _onehot_target(base, tokens, eta):
    return np.eye(base.shape[1])[tokens]


# the built-in targets every variant is ranked against, on the same grid
REFERENCES = {
    "gift": lambda base, tokens, eta: gift_target(base, tokens, eta),
    "gift_seq": lambda base, tokens, eta: sequence_consistent_gift_target(base, tokens, eta),
    "sft": _onehot_target,
}
LIMIT_TOLERANCE = 1e-6  # max |q - pi0| at eta = 1e-8 and max |q - onehot| at eta = 200
STATIONARY_TOLERANCE = 1e-6  # max |pi* - q|: the exact policy is a stationary point


def score(rows: list[dict], tolerance: float) -> dict:
    """Worst and median KL over instances, and the share of instances within `tolerance`."""
    kl = np.array([r["kl"] for r in rows])
    return {
        "worst": float(kl.max()),
        "median": float(np.median(kl)),
        "within": float(np.mean(kl <= tolerance)),
    }


@dataclass
class Validation:
    """One variant's rows on the grid, the built-ins' rows on the same grid, and the verdict.

    checks: the pass/fail lines of the verdict, {name: (passed, measured, threshold)}:
        kl (worst KL over grid and search), limit_zero (eta -> 0 gives the base), limit_inf
        (eta -> inf gives one-hot SFT), stationary (the exact policy is a stationary point).
    references: {gift, gift_seq, sft: their rows on the grid}.  scores: {name: score(...)},
        the variant's under "variant".  worse_than_gift: the grid instances where the variant's KL
        exceeds GIFT's by more than the tolerance.
    """

    rows: list[dict]
    summary: list[dict]
    worst: dict
    search: dict | None
    tolerance: float
    references: dict = field(default_factory=dict)
    passed: bool = field(init=False)
    checks: dict = field(init=False)
    scores: dict = field(init=False)
    worse_than_gift: list = field(init=False)

    def __post_init__(self):
        worst = max([self.worst["kl"]] + ([self.search["kl"]] if self.search else []))
        limit0 = max(r["limit_zero_gap"] for r in self.rows)
        limit_inf = max(r["limit_inf_gap"] for r in self.rows)
        stationary = max(r["stationary_gap"] for r in self.rows)
        self.checks = {
            "kl": (worst <= self.tolerance, worst, self.tolerance),
            "limit_zero": (limit0 <= LIMIT_TOLERANCE, limit0, LIMIT_TOLERANCE),
            "limit_inf": (limit_inf <= LIMIT_TOLERANCE, limit_inf, LIMIT_TOLERANCE),
            "stationary": (stationary <= STATIONARY_TOLERANCE, stationary, STATIONARY_TOLERANCE),
        }
        self.passed = all(ok for ok, _, _ in self.checks.values())
        self.scores = {"variant": score(self.rows, self.tolerance)} | {
            k: score(rs, self.tolerance) for k, rs in self.references.items()
        }
        gift = self.references.get("gift")
        self.worse_than_gift = (
            [r for r, g in zip(self.rows, gift, strict=True) if r["kl"] > g["kl"] + self.tolerance]
            if gift
            else []
        )

    def ranking(self) -> list[tuple[str, dict]]:
        """(name, score) from the closest to the exact policy: median KL, then worst KL."""
        return sorted(self.scores.items(), key=lambda kv: (kv[1]["median"], kv[1]["worst"]))


def summarise(rows: list[dict]) -> list[dict]:
    """One row per grid cell (all but the seed): mean KL over seeds with a 95% t-interval (lower
    end clipped at 0), the largest KL, gain error and stationarity gap."""
    cells: dict = {}
    for r in rows:
        key = (r["vocab"], r["horizon"], r["concentration"], r["eta"], r["gold"])
        cells.setdefault(key, []).append(r)
    out = []
    for (v, t, c, e, g), rs in cells.items():
        m, lo, hi = _mean_ci([r["kl"] for r in rs])
        out.append(
            {
                "vocab": v,
                "horizon": t,
                "concentration": c,
                "eta": e,
                "gold": g,
                "seeds": len(rs),
                "kl_mean": m,
                "kl_low": lo,
                "kl_high": hi,
                "kl_max": max(r["kl"] for r in rs),
                "gain_error_max": max(r["gain_error"] for r in rs),
                "stationary_gap_max": max(r["stationary_gap"] for r in rs),
            }
        )
    return out


def search_worst(fn, grid: Grid, examples: int) -> dict | None:
    """Hypothesis, targeted at the KL, over the grid's bounds (integers and intervals between the
    grid's smallest and largest values); None when hypothesis is not installed."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings, target
        from hypothesis import strategies as st
    except ImportError:
        return None
    found: dict = {"kl": -1.0}
    instances = st.builds(
        Instance,
        st.integers(min(grid.vocab), max(grid.vocab)),
        st.integers(min(grid.horizon), max(grid.horizon)),
        st.floats(min(grid.concentration), max(grid.concentration)),
        st.floats(min(grid.eta), max(grid.eta)),
        st.integers(0, 10**6),
        st.floats(0.0, 1.0),
    )

    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate, Phase.target],
        suppress_health_check=list(HealthCheck),
    )
    @given(instances)
    def probe(inst):
        row = check_instance(fn, inst)
        target(row["kl"])
        if row["kl"] > found["kl"]:
            found.clear()
            found.update(row)

    probe()
    return found


def validate_variant(
    fn, grid: Grid | None = None, tolerance: float = 1e-8, search: int = 40
) -> Validation:
    """Run `fn` on every instance of `grid` and on `search` hypothesis-chosen instances, and the
    built-in targets (REFERENCES) on the same grid. Raises VariantError (one line) when `fn` is
    not a valid variant."""
    if not callable(fn):
        raise VariantError(f"the variant must be a function, got {type(fn).__name__}")
    grid = grid or Grid()
    instances = grid.instances()
    rows = [check_instance(fn, inst) for inst in instances]
    worst = max(rows, key=lambda r: r["kl"])
    found = search_worst(fn, grid, search) if search > 0 else None
    refs = {k: [check_instance(f, inst) for inst in instances] for k, f in REFERENCES.items()}
    return Validation(rows, summarise(rows), worst, found, tolerance, refs)
