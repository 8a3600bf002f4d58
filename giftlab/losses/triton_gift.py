"""The GIFT / SFT loss head as one Triton kernel per chunk of token rows (the Liger / Cut-CE
pattern); giftlab.losses.fused calls it on CUDA, and the tests run it on the CPU under Triton's
interpreter (TRITON_INTERPRET=1) against the torch chunk (`fused._torch_chunk`).

Per row (token) t, with policy logits z, reference logits z_ref, gold y, gain beta_t and
smoothing s (docs/theory.md sections 3b and 4):

    base  = (1 - s) softmax(z_ref) + s / V                      (the smoothed reference)
    w     = sigmoid(log(e^beta - 1) + log base_y)               (the gate; 1 at beta = inf)
    q     = (1 - w) base + w onehot(y)                          (= softmax(log base + beta onehot(y)))
    loss  = -sum_a q_a log softmax(z)_a          (= logsumexp(z) - sum_a q_a z_a)
    grad  = (softmax(z) - q) * row_scale                        (written over z, in z's dtype)

Without a reference (SFT) q = onehot(y). Pass 1 over the row: online max / sum-exp of z and
z_ref; pass 2: the sums for the loss and the statistics, and the gradient. Everything in float32
registers, whatever the logits' dtype. Ignored rows (y = -100) get loss 0, gradient 0, stats 0.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

# the statistics the kernel writes, in giftlab.losses.gift.STAT_NAMES order
N_STATS = 10


@triton.jit
def _rescale(old_max, new_max):
    """exp(old_max - new_max), 1 while both are still -inf (an all -inf prefix of the row)."""
    return tl.where(old_max == new_max, 1.0, tl.exp(old_max - new_max))


@triton.jit
def _gift_rows(
    z_ptr,
    zr_ptr,
    labels_ptr,
    lem1_ptr,
    scale_ptr,
    loss_ptr,
    stats_ptr,
    n_rows,
    V,
    z_stride,
    zr_stride,
    log1m_s,
    log_unif,
    HAS_REF: tl.constexpr,
    WANT_STATS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    y = tl.load(labels_ptr + row)
    valid = y != -100
    y_safe = tl.where(valid, y, 0)
    z_row = z_ptr + row.to(tl.int64) * z_stride
    zr_row = zr_ptr + row.to(tl.int64) * zr_stride
    offs0 = tl.arange(0, BLOCK)

    # pass 1: max and sum-exp of z (and z_ref), online over blocks
    m_z = -float("inf")
    s_z = 0.0
    m_r = -float("inf")
    s_r = 0.0
    for start in range(0, V, BLOCK):
        offs = start + offs0
        inb = offs < V
        z = tl.load(z_row + offs, mask=inb, other=-float("inf")).to(tl.float32)
        new_m = tl.maximum(m_z, tl.max(z, 0))
        s_z = s_z * _rescale(m_z, new_m) + tl.sum(
            tl.where(z == -float("inf"), 0.0, tl.exp(z - new_m)), 0
        )
        m_z = new_m
        if HAS_REF:
            zr = tl.load(zr_row + offs, mask=inb, other=-float("inf")).to(tl.float32)
            new_r = tl.maximum(m_r, tl.max(zr, 0))
            s_r = s_r * _rescale(m_r, new_r) + tl.sum(
                tl.where(zr == -float("inf"), 0.0, tl.exp(zr - new_r)), 0
            )
            m_r = new_r
    lse_z = m_z + tl.log(s_z)
    z_y = tl.load(z_row + y_safe).to(tl.float32)

    # the gate from the smoothed reference's gold probability
    w = 1.0
    one_minus_w = 0.0
    lse_r = 0.0
    logp0_y = 0.0
    if HAS_REF:
        lse_r = m_r + tl.log(s_r)
        logp0_y = tl.load(zr_row + y_safe).to(tl.float32) - lse_r
        a = log1m_s + logp0_y
        mx = tl.maximum(a, log_unif)
        log_base_y = mx + tl.log(tl.exp(a - mx) + tl.exp(log_unif - mx))
        x = tl.load(lem1_ptr + row) + log_base_y  # log(e^beta - 1) + log base_y
        w = tl.sigmoid(x)
        one_minus_w = tl.sigmoid(-x)
    scale = tl.load(scale_ptr + row)

    # pass 2: sums for the loss and statistics (over log-probabilities, not raw logits, to keep
    # float32 cancellation small); the gradient over z
    q_logp = 0.0  # sum q log p
    p_logp = 0.0  # sum p log p
    p0_logp0 = 0.0  # sum p0 log p0
    p_logp0 = 0.0  # sum p log p0
    q_logq = 0.0  # sum q log q
    for start in range(0, V, BLOCK):
        offs = start + offs0
        inb = offs < V
        logp = tl.load(z_row + offs, mask=inb, other=-float("inf")).to(tl.float32) - lse_z
        p = tl.where(inb, tl.exp(logp), 0.0)
        is_y = offs == y_safe
        if HAS_REF:
            logp0 = tl.load(zr_row + offs, mask=inb, other=-float("inf")).to(tl.float32) - lse_r
            p0 = tl.where(inb, tl.exp(logp0), 0.0)
            base = tl.exp(log1m_s) * p0 + tl.exp(log_unif)
            q = tl.where(inb, one_minus_w * base + tl.where(is_y, w, 0.0), 0.0)
            if WANT_STATS:
                p0_logp0 += tl.sum(tl.where(p0 > 0, p0 * logp0, 0.0), 0)
                p_logp0 += tl.sum(tl.where(p > 0, p * logp0, 0.0), 0)
                q_logq += tl.sum(tl.where(q > 0, q * tl.log(q), 0.0), 0)
        else:
            q = tl.where(is_y & inb, 1.0, 0.0)
        q_logp += tl.sum(tl.where(q > 0, q * logp, 0.0), 0)
        if WANT_STATS:
            p_logp += tl.sum(tl.where(p > 0, p * logp, 0.0), 0)
        grad = tl.where(valid, (p - q) * scale, 0.0)
        tl.store(z_row + offs, grad.to(z_ptr.dtype.element_ty), mask=inb)

    loss = -q_logp
    tl.store(loss_ptr + row, tl.where(valid, loss, 0.0))
    if WANT_STATS:
        policy_entropy = -p_logp
        ref_entropy = -p0_logp0
        target_entropy = -q_logq
        kl_to_base = p_logp - p_logp0
        top1 = tl.where(z_y >= m_z, 1.0, 0.0)
        out = stats_ptr + row
        tl.store(out, tl.where(valid, policy_entropy, 0.0))
        tl.store(out + n_rows, tl.where(valid, ref_entropy, 0.0))
        tl.store(out + 2 * n_rows, tl.where(valid, target_entropy, 0.0))
        tl.store(out + 3 * n_rows, tl.where(valid, tl.exp(z_y - lse_z), 0.0))
        tl.store(out + 4 * n_rows, tl.where(valid, tl.exp(logp0_y), 0.0))
        tl.store(out + 5 * n_rows, tl.where(valid, w, 0.0))
        tl.store(out + 6 * n_rows, tl.where(valid, loss - target_entropy, 0.0))
        tl.store(out + 7 * n_rows, tl.where(valid, kl_to_base, 0.0))
        tl.store(out + 8 * n_rows, tl.where(valid, lse_z - z_y, 0.0))
        tl.store(out + 9 * n_rows, tl.where(valid, top1, 0.0))


def triton_chunk(z, zr, labels, beta, smoothing, row_scale, stats, block: int | None = None):
    """One chunk of rows through the kernel: the same contract as `fused._torch_chunk`.

    z: (c, V) policy logits (overwritten with the scaled gradient, z's dtype); zr: (c, V) or None.
    labels: (c,) int64 with -100 for ignored rows.  beta: (c,) float (inf allowed).
    row_scale: (c,) float32, the gradient's factor per row.  stats: None or a dict to fill (c,).
    block: vocabulary entries per step of the row loop (default: up to 4096; tests use small ones).
    Returns (per-token loss (c,) float32, the gradient: z itself).
    """
    c, v = z.shape
    z = z.contiguous()
    has_ref = zr is not None
    zr_arg = zr.contiguous() if has_ref else z
    lem1 = _log_expm1(beta.to(torch.float32)) if has_ref else row_scale
    loss = torch.empty(c, dtype=torch.float32, device=z.device)
    want = stats is not None and has_ref
    buf = torch.empty((N_STATS, c) if want else (1,), dtype=torch.float32, device=z.device)
    log1m_s = math.log1p(-smoothing) if smoothing < 1 else -math.inf
    log_unif = math.log(smoothing / v) if smoothing > 0 else -math.inf
    block = block or min(4096, triton.next_power_of_2(v))
    _gift_rows[(c,)](
        z,
        zr_arg,
        labels.contiguous(),
        lem1.contiguous(),
        row_scale.contiguous(),
        loss,
        buf,
        c,
        v,
        z.stride(0),
        zr_arg.stride(0),
        log1m_s,
        log_unif,
        HAS_REF=has_ref,
        WANT_STATS=want,
        BLOCK=block,
        num_warps=8 if block >= 2048 else 4,
    )
    if want:
        from giftlab.losses.gift import STAT_NAMES

        for i, name in enumerate(STAT_NAMES):
            stats[name] = buf[i]
    return loss, z


def _log_expm1(beta: torch.Tensor) -> torch.Tensor:
    """log(e^beta - 1), accurate for small and large beta; -inf at 0, inf at inf."""
    from giftlab.losses._common import log_expm1

    return log_expm1(beta)
