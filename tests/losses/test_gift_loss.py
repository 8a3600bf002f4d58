"""GIFT loss against the naive reference formula, cross-entropy, its gradient and the exact
Gibbs policy of giftlab.theory (the test imports both; the loss never imports theory)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from giftlab.losses import (
    gift_loss,
    gift_target,
    gift_token_stats,
    kd_to_base_loss,
    sequence_consistent_gift_loss,
    sequence_gains,
)
from giftlab.theory import TabularLM, gibbs_policy, soft_bellman
from giftlab.theory.gift import exact_gains, gate_weight, gold_path, gold_reward

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact


def naive_reference_gift(logits, ref_logits, labels, beta, smoothing, ignore_index=-100):
    """The public reference trainer's formula: softmax, uniform mixing, log, +beta at the label,
    softmax, soft cross-entropy; mean over non-ignored tokens."""
    v = logits.shape[-1]
    valid = labels != ignore_index
    lab = torch.where(valid, labels, 0)
    probs = torch.softmax(ref_logits, -1)
    mixed = (1 - smoothing) * probs + smoothing / v
    target_logits = torch.log(mixed) + beta * F.one_hot(lab, v).to(logits.dtype)
    q = torch.softmax(target_logits, -1)
    per_token = -(q * torch.log_softmax(logits, -1)).sum(-1)
    return (per_token * valid).sum() / valid.sum().clamp(min=1), per_token, q


@st.composite
def batches(draw, dtype=torch.float64, max_scale=1e4):
    shape = draw(st.sampled_from([(1, 1, 2), (3, 5), (2, 7, 13), (4, 3, 33), (9, 1)]))
    v = shape[-1]
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([1.0, 10.0, max_scale]))
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    ref = (
        torch.randn(shape, generator=g, dtype=torch.float64)
        * draw(st.sampled_from([1.0, 5.0, 30.0]))
    ).to(dtype)
    labels = torch.randint(0, v, shape[:-1], generator=g)
    mask = draw(st.sampled_from(["none", "some", "all"]))
    if mask == "some":
        labels[torch.rand(shape[:-1], generator=g) < 0.4] = -100
    elif mask == "all":
        labels[:] = -100
    return logits, ref, labels


betas = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 20.0, 100.0]), st.floats(0.0, 60.0))
smoothings = st.sampled_from([0.0, 0.01, 0.5, 1.0])


@given(batches(), betas, smoothings)
def test_gift_loss_agrees_with_reference_formula_where_finite(batch, beta, smoothing):
    logits, ref, labels = batch
    ours = gift_loss(logits, ref, labels, beta, smoothing)
    naive, _, _ = naive_reference_gift(logits, ref, labels, beta, smoothing)
    if torch.isfinite(naive):
        torch.testing.assert_close(ours, naive, rtol=1e-10, atol=1e-10 * (1 + naive.abs().item()))
    assert torch.isfinite(ours)


@given(batches(), smoothings)
def test_gift_loss_equals_cross_entropy_at_infinite_beta(batch, smoothing):
    logits, ref, labels = batch
    ours = gift_loss(logits, ref, labels, math.inf, smoothing)
    if (labels != -100).any():
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        torch.testing.assert_close(ours, ce)
    else:
        assert ours.item() == 0.0


@given(batches(max_scale=10.0), st.floats(1.0, 40.0))
def test_gift_loss_approaches_cross_entropy_within_derived_bound(batch, beta):
    """|L_beta - L_inf| = (1 - w) |CE(pi0, pi) + log pi(y)|, and 1 - w <= e^-beta / p_y."""
    logits, ref, labels = batch
    keep = labels != -100
    per_beta = gift_loss(logits, ref, labels, beta, reduction="none")
    per_inf = gift_loss(logits, ref, labels, math.inf, reduction="none")
    logp, ref_logp = torch.log_softmax(logits, -1), torch.log_softmax(ref, -1)
    lab = torch.where(keep, labels, 0)
    p_y = ref_logp.gather(-1, lab[..., None]).squeeze(-1).exp()
    gap = (-(ref_logp.exp() * logp).sum(-1) + logp.gather(-1, lab[..., None]).squeeze(-1)).abs()
    bound = torch.exp(torch.tensor(-beta, dtype=torch.float64)) / p_y * gap
    assert torch.all((per_beta - per_inf).abs()[keep] <= bound[keep] * (1 + 1e-9) + 1e-12)


def test_kd_to_base_is_cross_entropy_between_softmaxes():
    g = torch.Generator().manual_seed(0)
    z, zr = (
        torch.randn(6, 9, generator=g, dtype=torch.float64),
        torch.randn(6, 9, generator=g, dtype=torch.float64),
    )
    labels = torch.tensor([1, 2, -100, 4, 0, 8])
    naive = -(torch.softmax(zr, -1) * torch.log_softmax(z, -1)).sum(-1)[labels != -100].mean()
    torch.testing.assert_close(kd_to_base_loss(z, zr, labels), naive)
    torch.testing.assert_close(gift_loss(z, zr, labels, 0.0), naive)


@given(batches(max_scale=30.0), betas, smoothings)
def test_gift_gradient_is_softmax_minus_target(batch, beta, smoothing):
    logits, ref, labels = batch
    logits = logits.clone().requires_grad_(True)
    gift_loss(logits, ref, labels, beta, smoothing, reduction="sum").backward()
    keep = (labels != -100).unsqueeze(-1)
    expected = torch.softmax(logits.detach(), -1) - gift_target(
        ref, torch.where(keep[..., 0], labels, 0), beta, smoothing
    )
    torch.testing.assert_close(logits.grad, torch.where(keep, expected, 0.0))


@given(
    st.integers(2, 12),
    st.integers(0, 2**16),
    st.one_of(st.floats(0.0, 50.0), st.just(math.inf)),
    st.sampled_from([0.0, 0.1]),
)
def test_gift_target_is_the_theory_gibbs_policy(v, seed, beta, smoothing):
    """q = pi0~ exp(beta 1[a = y]) / Z: giftlab.theory.gibbs_policy with a one-hot reward."""
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(4, v, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, v, (4,), generator=g)
    base = (1 - smoothing) * torch.softmax(ref, -1).numpy() + smoothing / v
    reward = np.eye(v)[labels.numpy()]
    expected = np.stack([gibbs_policy(base[i], reward[i], beta) for i in range(4)])
    torch.testing.assert_close(
        gift_target(ref, labels, beta, smoothing), torch.from_numpy(expected)
    )


@given(st.integers(2, 12), st.integers(0, 2**16), st.floats(0.0, 30.0), st.sampled_from([0.0, 0.2]))
def test_gibbs_policy_minimises_gift_loss_over_free_logits(v, seed, beta, smoothing):
    """CE(q, softmax(z)) is convex in z; at z = log of the theory's Gibbs policy its gradient is 0,
    so that policy is the global minimiser, and any perturbation costs more."""
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(3, v, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, v, (3,), generator=g)
    base = (1 - smoothing) * torch.softmax(ref, -1).numpy() + smoothing / v
    star = np.stack([gibbs_policy(base[i], np.eye(v)[labels[i]], beta) for i in range(3)])
    z = torch.log(torch.from_numpy(star)).requires_grad_(True)
    loss = gift_loss(z, ref, labels, beta, smoothing, reduction="sum")
    (grad,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)
    bumped = z.detach() + 1e-3 * torch.randn(z.shape, generator=g, dtype=torch.float64)
    # (second-order change; it can fall below round-off when q is near one-hot)
    # round-off of the sum: eps * |log pi| (<~ 50) * V terms * 3 rows
    assert (
        gift_loss(bumped, ref, labels, beta, smoothing, reduction="sum")
        >= loss - 3 * v * 50 * 2.3e-16
    )


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_low_precision_inputs_match_float64_on_the_same_values(dtype, tol):
    """fp32 and bf16 inputs are computed in float32: compare with float64 on the rounded inputs
    (bf16 tolerance: float32 softmax of logits of size ~10 after bf16 rounding, rtol ~ 2^-8)."""
    g = torch.Generator().manual_seed(1)
    z = (torch.randn(5, 7, 301, generator=g) * 4).to(dtype)
    zr = (torch.randn(5, 7, 301, generator=g) * 4).to(dtype)
    labels = torch.randint(0, 301, (5, 7), generator=g)
    labels[0] = -100
    out = gift_loss(z, zr, labels, 20.0, 0.01)
    assert out.dtype == torch.float32
    ref64 = gift_loss(z.double(), zr.double(), labels, 20.0, 0.01)
    torch.testing.assert_close(out.double(), ref64, rtol=tol, atol=tol)


def test_all_ignored_gives_zero_loss_and_zero_gradient():
    z = torch.randn(2, 3, 5, requires_grad=True)
    labels = torch.full((2, 3), -100)
    loss = gift_loss(z, torch.randn(2, 3, 5), labels, 20.0)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(z.grad == 0) and not torch.isnan(z.grad).any()


# -- sequence-consistent GIFT --------------------------------------------------------------------


@given(st.integers(1, 9), st.integers(0, 2**16), st.floats(0.0, 60.0))
def test_sequence_gains_match_theory_exact_gains(t, seed, eta):
    g = torch.Generator().manual_seed(seed)
    logp = torch.log(torch.rand(2, t, generator=g, dtype=torch.float64))
    valid = torch.ones(2, t, dtype=torch.bool)
    ours = sequence_gains(logp, valid, eta)
    for row in range(2):
        torch.testing.assert_close(ours[row], torch.from_numpy(exact_gains(logp[row].numpy(), eta)))


def test_sequence_gains_skip_ignored_and_reset_at_segment_boundaries():
    logp = torch.log(torch.tensor([[0.5, 0.9, 0.2, 0.7, 0.6, 0.3]], dtype=torch.float64))
    valid = torch.tensor([[True, False, True, True, True, True]])
    seg = torch.tensor([[0, 0, 0, 1, 1, 1]])
    eta = 3.0
    got = sequence_gains(logp, valid, eta, seg)
    # segment 0: valid tokens 0, 2 -> suffix of token 0 is p2 = 0.2; token 2 is last
    # segment 1: tokens 3, 4, 5 -> suffixes 0.6 * 0.3, 0.3, empty
    suffix = torch.tensor([[0.2, 0.2, 1.0, 0.18, 0.3, 1.0]], dtype=torch.float64)
    expected = torch.log1p(math.expm1(eta) * suffix)
    torch.testing.assert_close(got[valid], expected[valid])


@pytest.mark.parametrize("end_token", [None, 0])
def test_sequence_consistent_gift_is_minimised_by_exact_gibbs_on_gold_path(end_token):
    """Reference logits = log pi0 along a TabularLM's gold path: the sequence-consistent loss is
    stationary at the exact soft-Bellman policy for r = eta 1[y = y*] (theory.soft_bellman)."""
    lm = TabularLM.random(5, 4, seed=7, concentration=0.6, end_token=end_token)
    gold = lm.sequences()[-3]
    idx, base, tokens = gold_path(lm, gold)
    eta = 4.0
    sb = soft_bellman(lm, gold_reward(lm, gold), eta)
    exact = np.stack([sb.policy[d][i] for d, i in enumerate(idx)])
    ref = torch.log(torch.from_numpy(base))[None]  # (1, L, V)
    labels = torch.from_numpy(tokens)[None]
    z = torch.log(torch.from_numpy(exact))[None].requires_grad_(True)
    loss = sequence_consistent_gift_loss(z, ref, labels, eta, reduction="sum")
    (grad,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)
    # whereas constant-beta GIFT at beta = eta is not stationary there (g_t < eta before the end)
    (grad_const,) = torch.autograd.grad(gift_loss(z, ref, labels, eta, reduction="sum"), z)
    if len(tokens) > 1:
        assert grad_const.abs().max() > 1e-3


# -- diagnostics ---------------------------------------------------------------------------------


@given(batches(max_scale=10.0), st.one_of(st.floats(0.0, 30.0), st.just(math.inf)), smoothings)
def test_token_stats_match_naive_formulas(batch, beta, smoothing):
    logits, ref, labels = batch
    stats = gift_token_stats(logits, ref, labels, beta, smoothing, chunk_rows=3)
    keep = labels != -100
    lab = torch.where(keep, labels, 0)
    p, p0 = torch.softmax(logits, -1), torch.softmax(ref, -1)
    q = gift_target(ref, lab, beta, smoothing)
    base = (1 - smoothing) * p0 + smoothing / logits.shape[-1]
    xlogy = torch.special.xlogy
    naive = {
        "policy_entropy": -xlogy(p, p).sum(-1),
        "ref_entropy": -xlogy(p0, p0).sum(-1),
        "target_entropy": -xlogy(q, q).sum(-1),
        "policy_gold_prob": p.gather(-1, lab[..., None]).squeeze(-1),
        "ref_gold_prob": p0.gather(-1, lab[..., None]).squeeze(-1),
        "gate_w": torch.from_numpy(
            gate_weight(base.gather(-1, lab[..., None]).squeeze(-1).numpy(), beta)
        ),
        "kl_target_policy": (xlogy(q, q) - q * torch.log_softmax(logits, -1)).sum(-1),
        "kl_to_base": (p * (torch.log_softmax(logits, -1) - torch.log_softmax(ref, -1))).sum(-1),
        "ce_gold": -torch.log_softmax(logits, -1).gather(-1, lab[..., None]).squeeze(-1),
    }
    for k, v in naive.items():
        torch.testing.assert_close(stats[k][keep], v[keep], rtol=1e-9, atol=1e-9, msg=k)
        assert torch.all(stats[k][~keep] == 0)


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": torch.tensor([0, 5])}, r"labels has 1 id\(s\) outside \[0, 5\)"),
        ({"labels": torch.tensor([0, -1])}, r"outside \[0, 5\)"),
        (
            {"ref_logits": torch.zeros(2, 6)},
            r"policy vocabulary \(logits.shape\[-1\] = 5\).*reference vocabulary \(ref_logits.shape\[-1\] = 6\)",
        ),
        ({"beta": -1.0}, "beta must be in"),
        ({"beta": float("nan")}, "beta must be in"),
        ({"smoothing": 1.5}, r"smoothing must be in \[0, 1\]"),
        ({"smoothing": -0.1}, r"smoothing must be in \[0, 1\]"),
        ({"logits": torch.tensor([[0.0] * 4 + [float("nan")]] * 2)}, "logits contains NaN"),
        ({"ref_logits": torch.tensor([[0.0] * 4 + [float("inf")]] * 2)}, "ref_logits contains NaN"),
        ({"reduction": "max"}, "reduction must be one of"),
    ],
)
def test_gift_loss_rejects_bad_input(kwargs, match):
    args = {
        "logits": torch.zeros(2, 5),
        "ref_logits": torch.zeros(2, 5),
        "labels": torch.tensor([0, 1]),
        "beta": 1.0,
    } | kwargs
    with pytest.raises(ValueError, match=match):
        gift_loss(**args)
