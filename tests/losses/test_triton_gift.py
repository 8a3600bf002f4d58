"""The Triton loss-head kernel against the torch chunk it replaces, Liger-style over a table of
dtypes, gains, smoothing, -inf logits, ignored rows and a vocabulary that is not a multiple of
the block; on the CPU under Triton's interpreter (TRITON_INTERPRET=1, set in conftest)."""

import math

import pytest
import torch

pytest.importorskip("triton")
from giftlab.losses import fused_linear_gift_loss, fused_linear_sft_loss, gift_loss  # noqa: E402
from giftlab.losses.fused import _torch_chunk  # noqa: E402
from giftlab.losses.triton_gift import triton_chunk  # noqa: E402

BETAS = [0.0, 20.0, 1e4, math.inf]
# on a GPU machine the same tests run the compiled kernel; elsewhere, the interpreter on the CPU
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _rows(dtype, c=7, v=37, seed=0, inf_logits=True):
    g = torch.Generator().manual_seed(seed)
    z = (3 * torch.randn(c, v, generator=g)).to(dtype)
    zr = (3 * torch.randn(c, v, generator=g)).to(dtype)
    labels = torch.randint(0, v, (c,), generator=g)
    labels[2] = -100  # an ignored row
    if inf_logits:  # a masked vocabulary entry (-inf in both models, off the gold token), and
        for r in range(c):  # one the reference alone rules out
            off = (int(labels[r]) + 5) % v if labels[r] >= 0 else 3
            z[r, off] = zr[r, off] = -math.inf
            zr[r, (off + 1) % v] = -math.inf
    return z.to(DEVICE), zr.to(DEVICE), labels.to(DEVICE)


# bf16 logits are the same values for both; the kernel rounds its gradient to bf16 on the store
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.bfloat16: dict(rtol=1e-2, atol=4e-3)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("beta", BETAS + ["per-token"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_kernel_equals_the_torch_chunk(dtype, beta, smoothing):
    z, zr, labels = _rows(dtype)
    c = z.shape[0]
    betas = (
        torch.tensor([0.0, 0.5, 3.0, 20.0, 1e4, math.inf, 7.0])
        if beta == "per-token"
        else torch.full((c,), float(beta))
    ).to(DEVICE)
    scale = (labels != -100).float() / 6
    want_stats, got_stats = {}, {}
    want_loss, want_grad = _torch_chunk(z, zr, labels, betas, smoothing, scale, want_stats)
    got_loss, got_grad = triton_chunk(
        z.clone(), zr, labels, betas, smoothing, scale, got_stats, block=16
    )
    assert got_grad.dtype == dtype
    torch.testing.assert_close(got_loss, want_loss.float(), **TOL[torch.float32])
    torch.testing.assert_close(got_grad.float(), want_grad.to(dtype).float(), **TOL[dtype])
    for k, t in want_stats.items():
        torch.testing.assert_close(got_stats[k], t.float(), **TOL[torch.float32], msg=k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_without_reference_is_cross_entropy(dtype):
    z, _, labels = _rows(dtype)
    scale = (labels != -100).float()
    want_loss, want_grad = _torch_chunk(z, None, labels, None, 0.0, scale, None)
    got_loss, got_grad = triton_chunk(z.clone(), None, labels, None, 0.0, scale, None, block=16)
    torch.testing.assert_close(got_loss, want_loss.float(), **TOL[torch.float32])
    torch.testing.assert_close(got_grad.float(), want_grad.to(dtype).float(), **TOL[dtype])
    ce = torch.nn.functional.cross_entropy(z.float(), labels, reduction="none")
    torch.testing.assert_close(got_loss, ce, **TOL[torch.float32])


@pytest.mark.parametrize("beta", [0.0, 5.0, math.inf])
def test_fused_loss_with_the_kernel_equals_the_dense_formula(beta):
    """Forward and backward through the whole fused head (kernel="triton") against gift_loss on
    materialised logits, with two chunks and a bias."""
    g = torch.Generator().manual_seed(1)
    n, h, v = 9, 8, 37

    def leaf(*shape):
        return torch.randn(*shape, generator=g).to(DEVICE).requires_grad_(True)

    hidden, weight, bias = leaf(n, h), leaf(v, h), leaf(v)
    ref_h, ref_w = (
        torch.randn(n, h, generator=g).to(DEVICE),
        torch.randn(v, h, generator=g).to(DEVICE),
    )
    labels = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    labels[4] = -100
    got = fused_linear_gift_loss(
        hidden,
        weight,
        labels,
        ref_hidden=ref_h,
        ref_weight=ref_w,
        beta=beta,
        smoothing=0.05,
        bias=bias,
        chunk_size=5,
        kernel="triton",
    )
    got_grads = torch.autograd.grad(got, (hidden, weight, bias))
    want = gift_loss(hidden @ weight.T + bias, ref_h @ ref_w.T, labels, beta=beta, smoothing=0.05)
    want_grads = torch.autograd.grad(want, (hidden, weight, bias))
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


def test_fused_sft_with_the_kernel_equals_cross_entropy():
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(6, 8, generator=g).to(DEVICE).requires_grad_(True)
    weight = torch.randn(37, 8, generator=g).to(DEVICE).requires_grad_(True)
    labels = torch.randint(0, 37, (6,), generator=g).to(DEVICE)
    got = fused_linear_sft_loss(hidden, weight, labels, chunk_size=4, kernel="triton")
    want = torch.nn.functional.cross_entropy(hidden @ weight.T, labels)
    torch.testing.assert_close(got, want)
    for a, b in zip(
        torch.autograd.grad(got, (hidden, weight)), torch.autograd.grad(want, (hidden, weight))
    ):
        torch.testing.assert_close(a, b)


def test_unknown_kernel_is_named():
    with pytest.raises(ValueError, match="kernel must be auto, torch or triton"):
        fused_linear_sft_loss(
            torch.randn(2, 4), torch.randn(5, 4), torch.tensor([0, 1]), kernel="cuda"
        )
