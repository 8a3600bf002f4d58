"""An exact simulator of the two-stage pipeline: initialisation (base, SFT, GIFT, Gibbs) then RL.

Problems: P prompts, K answers each, a base pi0(y | x), and a verifier r(x, y) in {0, 1} with
several correct answers per prompt; a demonstration shows one of them (the one the base likes
best: a plausible worked solution) for the first `n_train` prompts; the rest are held out.

Policies: logits(x, y) = log pi0(y | x) + phi(x, y) . w
  tabular:   phi = one-hot of (x, y) (w has P*K entries; prompts share nothing)
  loglinear: phi(x, y) = a random feature vector of dimension `features` built from prompt and
             answer embeddings (w is shared, so fitting demonstrated prompts moves held-out ones,
             as in a real model)
w = 0 is the base. Every quantity is exact (sums over answers), float64; only `grpo_step`
samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from giftlab.theory._checks import check_beta
from giftlab.theory.bandit import entropy, gibbs_policy, kl_divergence
from giftlab.theory.gift import gift_target

__all__ = [
    "Problem",
    "Policy",
    "exact_pass_at_k",
    "fit_initialisation",
    "policy_gradient_step",
    "global_optimum",
    "grpo_step",
    "initial_targets",
    "rl_metrics",
    "make_problem",
]


@dataclass
class Problem:
    base_probs: np.ndarray  # (P, K)
    reward: np.ndarray  # (P, K) 0/1 verifier
    demo: np.ndarray  # (P,) the demonstrated correct answer (used for the first n_train prompts)
    n_train: int
    features: np.ndarray | None = None  # (P, K, D) prompt/answer features, for loglinear policies

    @property
    def n_prompts(self) -> int:
        return self.base_probs.shape[0]

    @property
    def n_answers(self) -> int:
        return self.base_probs.shape[1]


DEMO_CHOICES = ("favourite", "random", "least")


def make_problem(
    n_prompts=40,
    n_answers=12,
    n_correct=3,
    n_train=20,
    seed=0,
    concentration=0.5,
    dim=8,
    noise=0.5,
    demo="favourite",
    memorise=0.0,
) -> Problem:
    """A random problem with structure that features can learn.

    Prompt and answer embeddings u_x, v_y ~ N(0, I_dim) and a shared direction g: answer y is
    correct for x when it is among the `n_correct` best by (u_x + g) . v_y + noise. The base
    rows are Dirichlet(concentration), independent of correctness. Features
    phi(x, y) = [v_y, u_x * v_y] / sqrt(dim) make correctness partly predictable, so a
    loglinear policy trained on demonstrated prompts transfers to held-out ones.

    demo: which correct answer is demonstrated: "favourite" (the largest base probability, a
    plausible worked solution), "random", or "least" (the base's least likely correct answer).
    memorise: scale of a demonstration-specific feature block (one feature per demonstrated
    prompt, on its demonstrated answer only), which lets a policy fit a demonstration without
    moving the shared features and does not transfer to held-out prompts (0: none).
    """
    if demo not in DEMO_CHOICES:
        raise ValueError(f"demo must be one of {DEMO_CHOICES}, got {demo!r}")
    demo_choice = demo
    if memorise < 0:
        raise ValueError(f"memorise must be >= 0, got {memorise}")
    if not 1 <= n_correct <= n_answers:
        raise ValueError(f"n_correct must be in [1, n_answers={n_answers}], got {n_correct}")
    if not 1 <= n_train <= n_prompts:
        raise ValueError(f"n_train must be in [1, n_prompts={n_prompts}], got {n_train}")
    rng = np.random.default_rng(seed)
    base = rng.dirichlet(np.full(n_answers, concentration), size=n_prompts)
    base = np.maximum(base, 1e-12)
    base /= base.sum(1, keepdims=True)
    u = rng.normal(size=(n_prompts, dim))
    v = rng.normal(size=(n_answers, dim))
    g = rng.normal(size=dim)
    score = (u + g) @ v.T + noise * rng.normal(size=(n_prompts, n_answers))
    reward = np.zeros((n_prompts, n_answers))
    top = np.argsort(-score, axis=1)[:, :n_correct]
    np.put_along_axis(reward, top, 1.0, axis=1)
    demo = np.argmax(np.where(reward > 0, base, -1.0), axis=1)
    if demo_choice == "least":
        demo = np.argmin(np.where(reward > 0, base, np.inf), axis=1)
    elif demo_choice == "random":  # drawn after everything else: the default problem is unchanged
        demo = np.array([rng.choice(np.flatnonzero(row > 0)) for row in reward])
    feats = np.concatenate(
        [np.broadcast_to(v, (n_prompts, n_answers, dim)), u[:, None, :] * v[None, :, :]], axis=-1
    ) / np.sqrt(dim)
    if memorise > 0:  # one feature per demonstrated prompt, on its demonstrated answer
        mem = np.zeros((n_prompts, n_answers, n_train))
        mem[np.arange(n_train), demo[:n_train], np.arange(n_train)] = memorise
        feats = np.concatenate([feats, mem], axis=-1)
    return Problem(base, reward, demo, n_train, feats)


@dataclass
class Policy:
    """logits = log pi0 + features @ w, features (P, K, D)."""

    problem: Problem
    features: np.ndarray
    w: np.ndarray = field(default=None)

    def __post_init__(self):
        if self.w is None:
            self.w = np.zeros(self.features.shape[-1])

    @classmethod
    def tabular(cls, problem: Problem) -> Policy:
        p, k = problem.base_probs.shape
        return cls(problem, np.eye(p * k).reshape(p, k, p * k))

    @classmethod
    def loglinear(cls, problem: Problem) -> Policy:
        """Shared parameters over the problem's prompt/answer features (see make_problem)."""
        if problem.features is None:
            raise ValueError("this problem has no features: build it with make_problem")
        return cls(problem, problem.features)

    def copy(self) -> Policy:
        return Policy(self.problem, self.features, self.w.copy())

    def logits(self) -> np.ndarray:
        return np.log(self.problem.base_probs) + self.features @ self.w

    def probs(self) -> np.ndarray:
        z = self.logits()
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def grad_from_logit_grad(self, g_logits: np.ndarray) -> np.ndarray:
        """dL/dw from dL/dlogits (P, K)."""
        return np.einsum("pk,pkd->d", g_logits, self.features)


def fit_initialisation(
    policy: Policy,
    targets: np.ndarray,
    prompts: np.ndarray,
    lr: float = 1.0,
    max_steps: int = 2000,
    target_loss: float | None = None,
    tol: float = 1e-10,
    val_prompts: np.ndarray | None = None,
):
    """Minimise mean_x CE(targets[x], pi(. | x)) over `prompts` by gradient descent (Adam-free,
    plain steps with backtracking). The gradient per prompt is softmax(logits) - target.

    Stops at `target_loss` (a stated loss, e.g. SFT's cross-entropy) or when the loss stalls.
    val_prompts: when given, the returned policy is the iterate with the lowest one-hot
    cross-entropy of the demonstrations on these (held-out) prompts, the paper's checkpoint rule.
    Returns (policy, final loss, steps).
    """
    pol = policy.copy()
    t = targets[prompts]

    def loss_grad(w):
        pol.w = w
        pi = pol.probs()[prompts]
        logp = np.log(np.maximum(pi, 1e-300))
        loss = float(-(t * logp).sum(1).mean())
        g = np.zeros_like(policy.problem.base_probs)
        g[prompts] = (pi - t) / len(prompts)
        return loss, pol.grad_from_logit_grad(g)

    def val_ce(w):
        pol.w = w
        pi = pol.probs()[val_prompts, policy.problem.demo[val_prompts]]
        return float(-np.log(np.maximum(pi, 1e-300)).mean())

    w = pol.w.copy()
    loss, grad = loss_grad(w)
    best_w, best_val = w, (val_ce(w) if val_prompts is not None else None)
    step = 0
    for step in range(1, max_steps + 1):  # noqa: B007 - the step count is returned
        if target_loss is not None and loss <= target_loss:
            break
        step_size = lr
        while True:
            new_w = w - step_size * grad
            new_loss, new_grad = loss_grad(new_w)
            if new_loss <= loss - 1e-4 * step_size * float(grad @ grad) or step_size < 1e-8:
                break
            step_size *= 0.5
        if loss - new_loss < tol:
            w, loss = new_w, new_loss
            break
        w, loss, grad = new_w, new_loss, new_grad
        if val_prompts is not None and (v := val_ce(w)) < best_val:
            best_w, best_val = w, v
    if val_prompts is not None:
        w = best_w
        loss = loss_grad(w)[0]
    pol.w = w
    return pol, loss, step


def initial_targets(problem: Problem, kind: str, beta: float = np.inf) -> np.ndarray:
    """(P, K) targets: "sft" one-hot demo; "gift" GIFT's target at beta (theory.gift.gift_target)."""
    if kind == "sft":
        return np.eye(problem.n_answers)[problem.demo]
    if kind == "gift":
        return gift_target(problem.base_probs, problem.demo, beta)
    raise ValueError(f"kind must be sft or gift, got {kind!r}")


def exact_pass_at_k(correct_mass: np.ndarray, k) -> np.ndarray:
    """P(at least one of k i.i.d. samples is correct) = 1 - (1 - c)^k, exactly. `correct_mass`
    is a probability: round-off within 1e-9 of [0, 1] is clipped, anything else (1.5, NaN) is a
    ValueError, not a silent 1."""
    k = np.asarray(k)
    c = np.asarray(correct_mass, dtype=np.float64)
    bad = ~((c >= -1e-9) & (c <= 1.0 + 1e-9))
    if bad.any():
        raise ValueError(
            f"correct_mass must be probabilities in [0, 1], got {c[bad].flat[0]!r} "
            f"({int(bad.sum())} value(s) outside)"
        )
    return 1.0 - (1.0 - np.clip(c, 0.0, 1.0))[..., None] ** k


def rl_metrics(policy: Policy, eps: float = 1e-3, ks=(1, 4, 16)) -> dict[str, float]:
    """Expected reward, pass@k, entropy, KL to base, correct answers above eps mass; split into
    train (demonstrated) and held-out prompts."""
    prob = policy.problem
    pi = policy.probs()
    c = (pi * prob.reward).sum(1)
    out = {}
    for name, sl in (("train", slice(0, prob.n_train)), ("heldout", slice(prob.n_train, None))):
        if sl.start == prob.n_prompts or (sl.stop is not None and sl.stop == 0):
            continue
        out[f"{name}/reward"] = float(c[sl].mean())
        for k, v in zip(ks, exact_pass_at_k(c[sl], ks).mean(0)):
            out[f"{name}/pass@{k}"] = float(v)
        out[f"{name}/entropy"] = float(entropy(pi[sl]).mean())
        out[f"{name}/kl_to_base"] = float(kl_divergence(pi[sl], prob.base_probs[sl]).mean())
        out[f"{name}/correct_above_eps"] = float(
            ((pi[sl] > eps) & (prob.reward[sl] > 0)).sum(1).mean()
        )
    return out


def policy_gradient_step(
    policy: Policy, lr: float, kl_coef: float = 0.0, kl_ref: np.ndarray | None = None, prompts=None
) -> Policy:
    """One exact gradient ascent step on mean_x E_pi[r] - kl_coef KL(pi || ref) (ref: base default).

    d/dlogits E_pi[r] = pi (r - E_pi r);   d/dlogits KL(pi || ref) = pi (log pi/ref - KL).
    """
    prob = policy.problem
    pi = policy.probs()
    prompts = np.arange(prob.n_train) if prompts is None else prompts
    g = pi * (prob.reward - (pi * prob.reward).sum(1, keepdims=True))
    if kl_coef > 0:
        ref = prob.base_probs if kl_ref is None else kl_ref
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.where(pi > 0, np.log(pi) - np.log(ref), 0.0)
        g -= kl_coef * pi * (log_ratio - (pi * log_ratio).sum(1, keepdims=True))
    mask = np.zeros(prob.n_prompts)
    mask[prompts] = 1.0 / len(prompts)
    new = policy.copy()
    new.w = policy.w + lr * policy.grad_from_logit_grad(g * mask[:, None])
    return new


def grpo_step(
    policy: Policy, lr: float, group: int, rng: np.random.Generator, prompts=None
) -> Policy:
    """One sampled GRPO step (no KL, advantages not divided by std, one update so the PPO clip is
    inactive): per prompt, G samples, A_i = r_i - mean(r), gradient mean_i A_i (onehot(y_i) - pi)."""
    prob = policy.problem
    pi = policy.probs()
    prompts = np.arange(prob.n_train) if prompts is None else prompts
    g = np.zeros_like(pi)
    for x in prompts:
        ys = rng.choice(prob.n_answers, size=group, p=pi[x])
        r = prob.reward[x, ys]
        adv = r - r.mean()
        for y, a in zip(ys, adv):
            g[x] += a * (np.eye(prob.n_answers)[y] - pi[x]) / group
    new = policy.copy()
    new.w = policy.w + lr * policy.grad_from_logit_grad(g / len(prompts))
    return new


def global_optimum(problem: Problem, eta) -> np.ndarray:
    """pi0 exp(eta r) / Z per prompt: the KL-regularised optimum (eta = inf: best answers)."""
    return gibbs_policy(problem.base_probs, problem.reward, check_beta(eta, "eta"))
