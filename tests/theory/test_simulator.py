"""The SFT -> RL simulator: exact pass@k against enumeration, the bridge, SFT absorbing, GRPO."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from giftlab.theory.bandit import gibbs_policy
from giftlab.theory.simulator import (
    Policy,
    exact_pass_at_k,
    fit_initialisation,
    global_optimum,
    grpo_step,
    initial_targets,
    make_problem,
    policy_gradient_step,
    rl_metrics,
)


@given(st.integers(2, 5), st.integers(1, 4), st.integers(0, 999))
def test_exact_pass_at_k_equals_enumeration_of_all_k_tuples(n_answers, k, seed):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(n_answers))
    correct = rng.uniform(size=n_answers) < 0.5
    brute = sum(
        np.prod(pi[list(t)])
        for t in itertools.product(range(n_answers), repeat=k)
        if correct[list(t)].any()
    )
    np.testing.assert_allclose(
        exact_pass_at_k(np.array([pi[correct].sum()]), [k])[0, 0], brute, rtol=1e-12, atol=1e-15
    )


def _from_probs(policy, probs):
    pol = policy.copy()
    pol.w = (np.log(probs) - np.log(policy.problem.base_probs)).ravel()
    return pol


def test_exact_rl_from_the_matching_gibbs_start_stays_at_the_global_optimum():
    """Start pi0 exp(beta r); RL with KL to the start at lam_rl = eta - beta: the exact RL optimum
    is pi0 exp(eta r) (round-off), and the policy gradient there is zero."""
    prob = make_problem(n_prompts=6, n_answers=5, n_correct=2, n_train=6, seed=1)
    eta, beta = 3.0, 1.0
    start = gibbs_policy(prob.base_probs, prob.reward, beta)
    np.testing.assert_allclose(
        gibbs_policy(start, prob.reward, eta - beta), global_optimum(prob, eta), rtol=1e-12
    )
    # the policy gradient of E[r] - KL(pi || start)/lam at the optimum vanishes
    opt = _from_probs(Policy.tabular(prob), global_optimum(prob, eta))
    moved = policy_gradient_step(opt, lr=1.0, kl_coef=1.0 / (eta - beta), kl_ref=start)
    np.testing.assert_allclose(moved.probs(), opt.probs(), rtol=1e-10, atol=1e-14)
    # and policy-gradient RL from the start approaches it (first order: slow where pi is small,
    # so the bound is on the distance shrinking, the fixed point itself is checked exactly above)
    from giftlab.theory.bandit import kl_divergence

    pol = _from_probs(Policy.tabular(prob), start)
    d0 = kl_divergence(pol.probs(), global_optimum(prob, eta)).mean()
    for _ in range(2000):
        pol = policy_gradient_step(pol, lr=20.0, kl_coef=1.0 / (eta - beta), kl_ref=start)
    assert kl_divergence(pol.probs(), global_optimum(prob, eta)).mean() < 1e-3 * d0


def test_sft_start_is_absorbing():
    """A one-hot (beta = inf) start: the exact policy gradient of E[r] is pi (r - E r) = 0 on every
    zeroed answer, so RL never gives mass back to the other correct answers."""
    prob = make_problem(n_prompts=5, n_answers=6, n_correct=3, n_train=5, seed=2)
    onehot = np.full_like(prob.base_probs, 0.0)
    onehot[np.arange(5), prob.demo] = 1.0
    g = onehot * (prob.reward - (onehot * prob.reward).sum(1, keepdims=True))
    assert np.all(g == 0)
    after = gibbs_policy(
        onehot, prob.reward, 50.0
    )  # exact KL-regularised RL at any finite strength
    np.testing.assert_array_equal(after, onehot)
    assert np.all(global_optimum(prob, 50.0)[prob.reward > 0] > 0)  # the optimum keeps them all


def test_initialisations_and_rl_improve_reward_and_loglinear_transfers():
    prob = make_problem(seed=0)
    base = Policy.loglinear(prob)
    prompts = np.arange(prob.n_train)
    sft, loss, _ = fit_initialisation(base, initial_targets(prob, "sft"), prompts, max_steps=200)
    m_base, m_sft = rl_metrics(base), rl_metrics(sft)
    assert loss < 1.0 and m_sft["train/reward"] > m_base["train/reward"]
    assert (
        m_sft["heldout/reward"] != m_base["heldout/reward"]
    )  # shared parameters move held-out prompts
    tab = fit_initialisation(
        Policy.tabular(prob), initial_targets(prob, "sft"), prompts, max_steps=50
    )[0]
    assert rl_metrics(tab)["heldout/reward"] == pytest.approx(m_base["heldout/reward"], abs=1e-12)
    after = grpo_step(sft, lr=1.0, group=8, rng=np.random.default_rng(0))
    again = grpo_step(sft, lr=1.0, group=8, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(after.w, again.w)  # seeded
    pg = sft
    for _ in range(20):
        pg = policy_gradient_step(pg, lr=1.0)
    assert rl_metrics(pg)["train/reward"] > m_sft["train/reward"]


def test_bad_problem_settings_are_named():
    with pytest.raises(ValueError, match="n_correct must be in"):
        make_problem(n_answers=3, n_correct=4)
    with pytest.raises(ValueError, match="n_train must be in"):
        make_problem(n_prompts=3, n_train=5)


def test_demonstration_choices_pick_the_stated_correct_answer():
    from giftlab.theory.simulator import make_problem

    fav, least, rand = (make_problem(seed=3, demo=d) for d in ("favourite", "least", "random"))
    for prob in (fav, least, rand):
        assert np.all(prob.reward[np.arange(prob.n_prompts), prob.demo] == 1)
    correct_base = np.where(fav.reward > 0, fav.base_probs, np.nan)
    np.testing.assert_array_equal(fav.demo, np.nanargmax(correct_base, 1))
    np.testing.assert_array_equal(least.demo, np.nanargmin(correct_base, 1))
    np.testing.assert_array_equal(fav.base_probs, rand.base_probs)  # same problem, other demos
    with pytest.raises(ValueError, match="demo must be one of"):
        make_problem(demo="best")


def test_memorising_features_exist_only_on_demonstrated_prompts():
    from giftlab.theory.simulator import make_problem

    prob = make_problem(seed=1, memorise=2.0)
    mem = prob.features[:, :, -prob.n_train :]
    assert np.all(mem[prob.n_train :] == 0)  # nothing to transfer to held-out prompts
    for i in range(prob.n_train):
        assert mem[i, prob.demo[i], i] == 2.0 and np.count_nonzero(mem[i]) == 1


def test_checkpoint_selection_by_held_out_cross_entropy():
    """The paper's rule: the returned iterate has the lowest one-hot CE on held-out demonstrations,
    never above the last iterate's or the start's."""
    from giftlab.theory.simulator import (
        Policy,
        fit_initialisation,
        initial_targets,
        make_problem,
    )

    prob = make_problem(seed=2, memorise=1.0)
    base = Policy.loglinear(prob)
    train, val = np.arange(prob.n_train), np.arange(prob.n_train, prob.n_prompts)
    target = initial_targets(prob, "sft")

    def val_ce(pol):
        return float(-np.log(pol.probs()[val, prob.demo[val]]).mean())

    last = fit_initialisation(base, target, train, max_steps=300)[0]
    chosen = fit_initialisation(base, target, train, max_steps=300, val_prompts=val)[0]
    assert val_ce(chosen) <= min(val_ce(last), val_ce(base)) + 1e-12
