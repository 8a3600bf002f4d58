"""Chunked fused-linear objectives equal their dense forms, forward and backward."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from giftlab.losses import (
    STAT_NAMES,
    fused_linear_gift_loss,
    fused_linear_sequence_consistent_gift_loss,
    fused_linear_sft_loss,
    gift_loss,
    gift_token_stats,
    sequence_consistent_gift_loss,
)

# float64 paths held to each other or to the naive formula at 1e-9 or tighter: CI also runs
# them under other CPU capabilities (make test-exact-cpus)
pytestmark = pytest.mark.exact


def _problem(seed, b, t, h, v, dtype=torch.float64, bias=False):
    g = torch.Generator().manual_seed(seed)
    hid = torch.randn(b, t, h, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    w = (
        (torch.randn(v, h, generator=g, dtype=torch.float64) / math.sqrt(h) * 3)
        .to(dtype)
        .requires_grad_(True)
    )
    rh = torch.randn(b, t, h, generator=g, dtype=torch.float64).to(dtype)
    rw = (torch.randn(v, h, generator=g, dtype=torch.float64) / math.sqrt(h) * 3).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[torch.rand(b, t, generator=g) < 0.3] = -100
    bb = (
        (torch.randn(v, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True))
        if bias
        else None
    )
    return hid, w, rh, rw, labels, bb


def _grads(loss, params):
    return torch.autograd.grad(loss, [p for p in params if p is not None])


shapes = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 7), st.integers(2, 23))


@given(
    shapes,
    st.integers(0, 999),
    st.one_of(st.floats(0.0, 40.0), st.just(math.inf)),
    st.sampled_from([0.0, 0.05]),
    st.integers(1, 11),
    st.booleans(),
)
def test_chunked_gift_equals_dense(shape, seed, beta, smoothing, chunk, bias):
    b, t, h, v = shape
    hid, w, rh, rw, labels, bb = _problem(seed, b, t, h, v, bias=bias)
    logits = hid @ w.T + (0 if bb is None else bb)
    dense = gift_loss(logits, rh @ rw.T, labels, beta, smoothing)
    fused = fused_linear_gift_loss(
        hid,
        w,
        labels,
        ref_hidden=rh,
        ref_weight=rw,
        beta=beta,
        smoothing=smoothing,
        bias=bb,
        chunk_size=chunk,
    )
    torch.testing.assert_close(fused, dense)
    for a, c in zip(_grads(fused, [hid, w, bb]), _grads(dense, [hid, w, bb])):
        torch.testing.assert_close(a, c)


@given(shapes, st.integers(0, 999), st.integers(1, 11))
def test_chunked_sft_equals_cross_entropy(shape, seed, chunk):
    b, t, h, v = shape
    hid, w, _, _, labels, _ = _problem(seed, b, t, h, v)
    fused = fused_linear_sft_loss(hid, w, labels, chunk_size=chunk)
    if (labels != -100).any():
        dense = F.cross_entropy((hid @ w.T).reshape(-1, v), labels.reshape(-1))
    else:
        dense = (hid @ w.T).sum() * 0.0
    torch.testing.assert_close(fused, dense)
    for a, c in zip(_grads(fused, [hid, w]), _grads(dense, [hid, w])):
        torch.testing.assert_close(a, c)


@given(shapes, st.integers(0, 999), st.floats(0.0, 30.0), st.integers(1, 11))
def test_chunked_sequence_consistent_gift_equals_dense(shape, seed, eta, chunk):
    b, t, h, v = shape
    hid, w, rh, rw, labels, _ = _problem(seed, b, t, h, v)
    dense = sequence_consistent_gift_loss(hid @ w.T, rh @ rw.T, labels, eta)
    fused = fused_linear_sequence_consistent_gift_loss(
        hid, w, labels, ref_hidden=rh, ref_weight=rw, eta=eta, chunk_size=chunk
    )
    torch.testing.assert_close(fused, dense)
    for a, c in zip(_grads(fused, [hid, w]), _grads(dense, [hid, w])):
        torch.testing.assert_close(a, c)


def test_chunked_stats_equal_dense_stats_and_ref_callable_works():
    hid, w, rh, rw, labels, _ = _problem(5, 2, 6, 4, 13)
    ref_logits = (rh @ rw.T).reshape(-1, 13)
    stats = {}
    loss = fused_linear_gift_loss(
        hid,
        w,
        labels,
        ref_logits_fn=lambda s, e: ref_logits[s:e],
        beta=3.0,
        chunk_size=5,
        stats=stats,
    )
    dense = gift_token_stats(hid @ w.T, rh @ rw.T, labels, 3.0)
    assert set(stats) == set(STAT_NAMES)
    for k in STAT_NAMES:
        torch.testing.assert_close(stats[k], dense[k].reshape(-1), msg=k)
    torch.testing.assert_close(loss, gift_loss(hid @ w.T, rh @ rw.T, labels, 3.0))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_chunked_low_precision_matches_dense_on_the_same_inputs(dtype, tol):
    """bf16: both forms round the logits of the bf16 matmul; float32 softmax and accumulation."""
    hid, w, rh, rw, labels, _ = _problem(2, 2, 33, 16, 257, dtype=dtype)
    dense = gift_loss(hid @ w.T, rh @ rw.T, labels, 20.0)
    fused = fused_linear_gift_loss(
        hid, w, labels, ref_hidden=rh, ref_weight=rw, beta=20.0, chunk_size=10
    )
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, dense, rtol=tol, atol=tol)
    for a, c in zip(_grads(fused, [hid, w]), _grads(dense, [hid, w])):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), c.float(), rtol=tol, atol=tol)


def test_chunked_all_ignored_is_zero_with_zero_gradient():
    hid, w, rh, rw, labels, _ = _problem(0, 1, 4, 3, 5)
    labels[:] = -100
    loss = fused_linear_gift_loss(hid, w, labels, ref_hidden=rh, ref_weight=rw, beta=1.0)
    gh, gw = _grads(loss, [hid, w])
    assert loss.item() == 0.0 and torch.all(gh == 0) and torch.all(gw == 0)


def test_chunked_rejects_bad_input():
    hid, w, rh, rw, labels, _ = _problem(0, 1, 4, 3, 5)
    with pytest.raises(
        ValueError,
        match=r"policy vocabulary \(5, weight.shape\[0\]\) differs from reference vocabulary \(6",
    ):
        fused_linear_gift_loss(
            hid, w, labels, ref_hidden=rh, ref_weight=torch.zeros(6, 3, dtype=torch.float64)
        )
    with pytest.raises(ValueError, match="ref_hidden and ref_weight, or as ref_logits_fn"):
        fused_linear_gift_loss(hid, w, labels)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        fused_linear_gift_loss(hid, w, torch.full_like(labels, 7), ref_hidden=rh, ref_weight=rw)
    with pytest.raises(ValueError, match="beta must be in"):
        fused_linear_gift_loss(hid, w, labels, ref_hidden=rh, ref_weight=rw, beta=-2.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fused_linear_gift_loss(hid, w, labels, ref_hidden=rh * float("nan"), ref_weight=rw)


@pytest.mark.parametrize("kernel", ["torch", "triton"])
@pytest.mark.parametrize("objective", ["sft", "gift", "gift_seq"])
@pytest.mark.parametrize("scale, cap", [(3.0, None), (0.25, None), (1.0, 1.5), (2.0, 0.7)])
def test_a_models_logit_map_is_in_the_loss_and_its_gradient(kernel, objective, scale, cap):
    """Soft-capping and logit scale (giftlab.models.head.LogitMap) after a biased head, for the
    policy and (another map) the reference: loss and gradients of hidden, weight and bias equal
    autograd through the dense formula on the mapped logits."""
    from giftlab.models.head import LogitMap

    if kernel == "triton":
        pytest.importorskip("triton")
    dtype = torch.float64 if kernel == "torch" else torch.float32
    tol = {"rtol": 1e-9, "atol": 1e-11} if kernel == "torch" else {"rtol": 2e-4, "atol": 2e-5}
    hid, w, rh, rw, labels, bb = _problem(7, 2, 6, 5, 11, dtype=dtype, bias=True)
    pol, ref = LogitMap(scale, cap), LogitMap(1.0 / scale, None if cap is None else 2 * cap)
    z = pol(hid @ w.T + bb)
    zr = ref(rh @ rw.T)
    kw = {"bias": bb, "chunk_size": 4, "kernel": kernel, "logit_map": pol}
    if objective == "sft":
        want = F.cross_entropy(z.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
        got = fused_linear_sft_loss(hid, w, labels, **kw)
    else:
        kw |= {"ref_hidden": rh, "ref_weight": rw, "ref_logit_map": ref}
        if objective == "gift":
            want = gift_loss(z, zr, labels, beta=3.0)
            got = fused_linear_gift_loss(hid, w, labels, beta=3.0, **kw)
        else:
            want = sequence_consistent_gift_loss(z, zr, labels, eta=3.0)
            got = fused_linear_sequence_consistent_gift_loss(hid, w, labels, eta=3.0, **kw)
    torch.testing.assert_close(got.to(want.dtype), want, **tol)
    for g_got, g_want in zip(_grads(got, (hid, w, bb)), _grads(want, (hid, w, bb))):
        torch.testing.assert_close(g_got, g_want, **tol)
