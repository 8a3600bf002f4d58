"""Chunked fused-linear GIFT and SFT: loss and gradients from hidden states, chunk by chunk.

The policy's logits z = h W^T (+ b) and the reference's logits are formed for `chunk_size` tokens
at a time; each chunk's loss and its gradients

    dL/dz = (softmax(z) - q) / n_valid,   dL/dh = dL/dz W,   dL/dW += dL/dz^T h

are computed in the forward pass and scaled by the incoming gradient in backward (the Liger /
Cut-Cross-Entropy pattern), so no (N, V) tensor outlives one chunk. q is the GIFT target of
giftlab.losses.gift (`gift_log_target`), or one-hot for SFT. The three products (logits, dL/dh,
dL/dW) run in the input dtype (bf16 on a GPU: tensor cores); softmax, log-sum-exp and the
weight-gradient sum across chunks are float32 (float64 inputs stay float64, exactly). The
per-chunk softmax / target / gradient step is `_torch_chunk` on the CPU and one Triton kernel
(giftlab.losses.triton_gift) on CUDA; `kernel=` overrides the choice.

Naive equivalent: gift_loss(m(h @ W.T + b), m0(ref_h @ ref_W.T + ref_b), labels, beta, smoothing),
m and m0 the models' logit maps (soft-capping, logit scale; giftlab.models.head).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from giftlab.losses._common import (
    check_beta,
    check_labels,
    check_smoothing,
    safe_labels,
    upcast,
)
from giftlab.losses.gift import (
    DEFAULT_BETA,
    STAT_NAMES,
    chunk_token_stats,
    gift_log_target,
    sequence_gains,
    smoothed_base_logp,
)

__all__ = [
    "default_chunk_size",
    "fused_linear_gift_loss",
    "fused_linear_sequence_consistent_gift_loss",
    "fused_linear_sft_loss",
]

RefLogitsFn = Callable[[int, int], torch.Tensor]


def default_chunk_size(vocab_size: int, device: torch.device, n_logit_buffers: int = 4) -> int:
    """Tokens per chunk. CPU: about 2^23 logits (32 MiB float32). CUDA: 2^26 logits (256 MiB per
    float32 buffer: large enough for efficient products), fewer when the chunk's `n_logit_buffers`
    float32 logit-sized buffers would take more than a quarter of the free memory."""
    budget = 2**23
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(2**26, free // (4 * 4 * n_logit_buffers))
    return max(8, budget // vocab_size)


def _linear(h, w, b):
    z = h @ w.T
    return z if b is None else z + b


def _torch_chunk(z, zr, labels, beta, smoothing, row_scale, stats):
    """One chunk of rows in torch: the reference the Triton kernel (triton_gift.triton_chunk) is
    tested against, and the CPU path.

    z: (c, V) policy logits (any float dtype); zr: (c, V) reference logits or None (SFT: q is
    one-hot).  labels: (c,) with -100 on ignored rows.  beta: (c,) gains.  row_scale: (c,) the
    gradient's factor per row.  stats: None or a dict to fill with STAT_NAMES -> (c,).
    Returns (per-token loss (c,), gradient (softmax(z) - q) * row_scale (c, V)), float32 or float64.
    """
    valid = labels != -100
    idx = safe_labels(labels, valid).unsqueeze(-1)
    logp = torch.log_softmax(upcast(z), dim=-1)  # (c, V)
    if zr is None:  # SFT: q = onehot(y)
        per_token = -logp.gather(-1, idx).squeeze(-1)
        grad_z = logp.exp()
        grad_z.scatter_add_(-1, idx, torch.full_like(idx, -1, dtype=grad_z.dtype))
    else:
        zr = upcast(zr)
        log_q = gift_log_target(zr, safe_labels(labels, valid), beta, smoothing)  # (c, V)
        q = log_q.exp()
        per_token = -torch.where(q > 0, q * logp, 0.0).sum(-1)  # 0 log 0 = 0 at masked entries
        if stats is not None:
            base_gold = smoothed_base_logp(zr, smoothing).gather(-1, idx).squeeze(-1)
            ref_logp = torch.log_softmax(zr, -1)
            for k, t in chunk_token_stats(logp, ref_logp, log_q, idx, base_gold, beta).items():
                stats[k] = torch.where(valid, t, 0.0)
            del ref_logp
        del log_q
        grad_z = logp.exp().sub_(q)
        del q
    del logp
    per_token = torch.where(valid, per_token, 0.0)
    grad_z.mul_(row_scale.to(grad_z.dtype).unsqueeze(-1))
    return per_token, grad_z


KERNELS = (
    "auto",
    "torch",
    "triton",
)  # the `kernel=` choices (auto: Triton on CUDA when it imports)


def _chunk_fn(kernel: str, device: torch.device):
    """The per-chunk computation: "torch", "triton", or "auto" (Triton on CUDA when importable)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be auto, torch or triton, got {kernel!r}")
    if kernel == "auto":
        kernel = "triton" if device.type == "cuda" and triton_available() else "torch"
    if kernel == "torch":
        return _torch_chunk
    from giftlab.losses.triton_gift import triton_chunk

    return triton_chunk


def triton_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def _chunk_logits(h, weight, bias, post):
    """(z, d_post): one chunk's logits in the input dtype, or through the model's logit map
    z' = post(z) in float32 / float64 with its derivative (taken before the chunk runs: the
    Triton kernel overwrites z)."""
    z = _linear(h, weight, bias)  # (c, V)
    if post is None:
        return z, None
    z = post(upcast(z))
    return z, post.grad(z)


def _reference_logits(ref_fn, s: int, e: int, z, v: int):
    """The reference's logits of tokens [s, e) (None without a reference); a cached reference
    fills its tail from the policy's own logits z (docs: losses.cached)."""
    if ref_fn is None:
        return None
    zr = ref_fn(s, e, z) if getattr(ref_fn, "needs_policy", False) else ref_fn(s, e)
    if zr.shape != (e - s, v):
        raise ValueError(
            f"reference logits for tokens [{s}, {e}) have shape {tuple(zr.shape)}, "
            f"expected {(e - s, v)} (policy vocabulary {v})"
        )
    return zr


class _Gradients:
    """The fused pass's accumulators: the loss sum, and the gradients of the hidden states, the
    weight and the bias, products in the input dtype, sums across chunks in float32 (float64
    for float64 inputs); the weight's starts as the first chunk's product, then accumulates in
    place (no (V, H) zeros)."""

    def __init__(self, hidden, weight, bias):
        self.acc = upcast(weight[:0]).dtype
        self.h = torch.zeros_like(hidden) if hidden.requires_grad else None
        self.w = None
        self.want_w = weight.requires_grad
        self.b = (
            torch.zeros(weight.shape[0], dtype=self.acc, device=weight.device)
            if bias is not None and bias.requires_grad
            else None
        )
        self.weight = weight
        self.total = torch.zeros((), dtype=self.acc, device=hidden.device)

    def add(self, per_token, grad_z, h, s: int, e: int) -> None:
        self.total += per_token.to(self.acc).sum()
        g = grad_z.to(h.dtype)  # the products in the input dtype
        if self.h is not None:
            self.h[s:e] = g @ self.weight
        if self.want_w:
            if self.w is None:
                self.w = (g.T @ h).to(self.acc)
            elif g.dtype == self.acc:
                self.w.addmm_(g.T, h)
            else:
                self.w += (g.T @ h).to(self.acc)
        if self.b is not None:
            self.b += g.sum(0, dtype=self.acc)


class _FusedLinearTokenLoss(torch.autograd.Function):
    """Products in the input dtype (bf16 on GPU: tensor cores), softmax / log-sum-exp and the
    weight-gradient sum across chunks in float32 (float64 inputs stay float64)."""

    @staticmethod
    def forward(
        ctx,
        hidden,
        weight,
        bias,
        labels,
        beta_tok,
        ref_fn,
        smoothing,
        chunk,
        stats_out,
        chunk_fn,
        post,
    ):
        n, v = hidden.shape[0], weight.shape[0]
        valid = labels != -100
        n_valid = valid.sum().clamp(min=1)
        grads = _Gradients(hidden, weight, bias)
        row_scale = valid.to(grads.acc) / n_valid
        if stats_out is not None:
            for k in STAT_NAMES:
                stats_out[k] = torch.zeros(n, dtype=grads.acc, device=hidden.device)
        # the torch chunk from a cache: the reference's own fast chunk (no statistics asked)
        fast_cached = (
            hasattr(ref_fn, "chunk") and chunk_fn is _torch_chunk and stats_out is None
        ) and smoothing == 0
        finite = torch.ones((), dtype=torch.bool, device=hidden.device)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            z, d_post = _chunk_logits(hidden[s:e], weight, bias, post)
            zr = None if fast_cached else _reference_logits(ref_fn, s, e, z, v)
            finite &= torch.isfinite(z).all() & (zr is None or torch.isfinite(zr).all())
            chunk_stats = {} if stats_out is not None and ref_fn is not None else None
            if fast_cached:  # a cached reference's own chunk: no (c, V) reference row
                per_token, grad_z = ref_fn.chunk(
                    s, e, z, labels[s:e], beta_tok[s:e], row_scale[s:e]
                )
            else:
                per_token, grad_z = chunk_fn(
                    z, zr, labels[s:e], beta_tok[s:e], smoothing, row_scale[s:e], chunk_stats
                )
            if d_post is not None:  # chain rule through the elementwise map: dL/dz = dL/dz' dz'/dz
                grad_z = grad_z.to(d_post.dtype).mul_(d_post)
            del z, zr, d_post
            for k, t in (chunk_stats or {}).items():
                stats_out[k][s:e] = t
            grads.add(per_token, grad_z, hidden[s:e], s, e)
            del grad_z
        if not bool(finite):
            raise ValueError("logits or ref_logits contain NaN or infinite values")
        ctx.save_for_backward(grads.h, grads.w, grads.b)
        ctx.weight_dtype = weight.dtype
        return grads.total / n_valid

    @staticmethod
    def backward(ctx, grad_output):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        g = grad_output
        out_h = None if grad_h is None else grad_h * g.to(grad_h.dtype)
        if grad_w is not None and bool(g == 1):  # the usual case: no pass over (V, H) to scale
            out_w = grad_w.to(ctx.weight_dtype)
        else:
            out_w = None if grad_w is None else (grad_w * g).to(ctx.weight_dtype)
        out_b = None if grad_b is None else (grad_b * g).to(ctx.weight_dtype)
        return out_h, out_w, out_b, None, None, None, None, None, None, None, None


def _prepare(hidden, weight, labels, ignore_index, chunk_size):
    if hidden.shape[-1] != weight.shape[-1]:
        raise ValueError(f"hidden size {hidden.shape[-1]} != lm_head weight's {weight.shape[-1]}")
    h = hidden.reshape(-1, hidden.shape[-1])
    lab = labels.reshape(-1)
    if lab.shape[0] != h.shape[0]:
        raise ValueError(f"labels hold {lab.shape[0]} tokens but hidden holds {h.shape[0]}")
    valid = check_labels(lab, weight.shape[0], ignore_index)
    lab = torch.where(valid, lab, torch.full_like(lab, -100))  # the Function's ignore value
    chunk = chunk_size or default_chunk_size(weight.shape[0], h.device)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return h, lab, valid, chunk


def _post(logit_map):
    """None for no map (or the identity), else the map: callable z -> z' with .grad(z')."""
    if logit_map is None or getattr(logit_map, "identity", False):
        return None
    if not (callable(logit_map) and hasattr(logit_map, "grad")):
        raise TypeError(
            "logit_map must be a giftlab.models.head.LogitMap (or have __call__ and grad)"
        )
    return logit_map


def _ref_fn(ref_hidden, ref_weight, ref_bias, ref_logits_fn, n_tokens, vocab, ref_map=None):
    if ref_logits_fn is not None:
        return ref_logits_fn
    if ref_hidden is None or ref_weight is None:
        raise ValueError("give the reference as ref_hidden and ref_weight, or as ref_logits_fn")
    if ref_weight.shape[0] != vocab:
        raise ValueError(
            f"policy vocabulary ({vocab}, weight.shape[0]) differs from reference vocabulary "
            f"({ref_weight.shape[0]}, ref_weight.shape[0])"
        )
    rh = ref_hidden.reshape(-1, ref_hidden.shape[-1]).detach()
    if rh.shape[0] != n_tokens:
        raise ValueError(f"ref_hidden holds {rh.shape[0]} tokens, hidden holds {n_tokens}")
    rw = ref_weight.detach()
    rb = None if ref_bias is None else ref_bias.detach()
    post = _post(ref_map)
    if post is None:
        return lambda s, e: _linear(rh[s:e], rw, rb)
    return lambda s, e: post(upcast(_linear(rh[s:e], rw, rb)))


def fused_linear_gift_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ref_hidden: torch.Tensor | None = None,
    ref_weight: torch.Tensor | None = None,
    ref_logits_fn: RefLogitsFn | None = None,
    beta=DEFAULT_BETA,
    smoothing: float = 0.0,
    bias: torch.Tensor | None = None,
    ref_bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    stats: dict | None = None,
    kernel: str = "auto",
    logit_map=None,
    ref_logit_map=None,
) -> torch.Tensor:
    """Mean GIFT loss over non-ignored tokens, from hidden states and the lm_head, chunked.

    L = mean_t -sum_a q_t,a log softmax(m(h_t W^T + b))_a,
    q_t = softmax(log pi0~ + beta onehot(y_t)),  pi0 = softmax(m0(ref_h_t ref_W^T + ref_b))

    Args:
        hidden: (..., H) policy final hidden states.  weight: (V, H) policy lm_head.
        labels: (...) gold ids or ignore_index.
        ref_hidden, ref_weight: (..., H), (V, H) the reference's; or ref_logits_fn(start, stop)
            giving reference logits (stop - start, V) for flattened tokens [start, stop).
        beta: float in [0, inf], or a (...) tensor of per-token gains.  smoothing: [0, 1].
        stats: optional dict, filled with STAT_NAMES -> (N,) per-token diagnostics (0 if ignored).
        kernel: "auto" (the Triton kernel on CUDA, torch elsewhere), "torch" or "triton".
        logit_map, ref_logit_map: the model's elementwise map m after its head (soft-capping,
            logit scale: giftlab.models.head.LogitMap) for the policy and the reference; None is
            the identity. The gradient goes through it: dL/dz = (softmax(z') - q) * m'(z).
    Returns:
        scalar float32 loss; gradients flow to hidden, weight and bias.
    """
    smoothing = check_smoothing(smoothing)
    h, lab, valid, chunk = _prepare(hidden, weight, labels, ignore_index, chunk_size)
    if isinstance(beta, torch.Tensor):
        if beta.numel() != lab.numel():
            raise ValueError(f"beta has {beta.numel()} entries, labels {lab.numel()}")
        if bool((beta < 0).any()) or bool(torch.isnan(beta).any()):
            raise ValueError("beta must be in [0, inf] at every token")
        beta_tok = upcast(beta.reshape(-1))
    else:
        beta_tok = torch.full(
            (lab.numel(),), check_beta(beta), dtype=upcast(h[:0]).dtype, device=h.device
        )
    ref_fn = _ref_fn(
        ref_hidden, ref_weight, ref_bias, ref_logits_fn, h.shape[0], weight.shape[0], ref_logit_map
    )
    chunk_fn = _chunk_fn(kernel, h.device)
    return _FusedLinearTokenLoss.apply(
        h, weight, bias, lab, beta_tok, ref_fn, smoothing, chunk, stats, chunk_fn, _post(logit_map)
    )


def fused_linear_sft_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    kernel: str = "auto",
    logit_map=None,
) -> torch.Tensor:
    """Mean SFT cross-entropy -log softmax(m(h W^T + b))_y over non-ignored tokens, chunked
    (m: the model's logit map, see fused_linear_gift_loss; None is the identity).

    Naive equivalent: cross_entropy(m(h @ W.T + b), labels, ignore_index=ignore_index).
    """
    h, lab, _, chunk = _prepare(hidden, weight, labels, ignore_index, chunk_size)
    dummy = torch.full((lab.numel(),), math.inf, device=h.device)
    chunk_fn = _chunk_fn(kernel, h.device)
    return _FusedLinearTokenLoss.apply(
        h, weight, bias, lab, dummy, None, 0.0, chunk, None, chunk_fn, _post(logit_map)
    )


@torch.no_grad()
def _gold_logp_chunked(ref_fn, labels, valid, smoothing, chunk):
    lab = safe_labels(labels, valid)
    parts = []
    for s in range(0, labels.shape[0], chunk):
        e = min(labels.shape[0], s + chunk)
        if hasattr(ref_fn, "gold_logp"):  # a cached reference: log pi0(y) itself
            gold = upcast(ref_fn.gold_logp(s, e))
            if smoothing > 0:  # log((1 - s) pi0(y) + s / V)
                log_u = torch.full_like(gold, math.log(smoothing / ref_fn.vocab))
                gold = torch.logaddexp(gold + math.log1p(-smoothing), log_u)
            parts.append(gold)
            continue
        base = smoothed_base_logp(upcast(ref_fn(s, e)), smoothing)
        parts.append(base.gather(-1, lab[s:e].unsqueeze(-1)).squeeze(-1))
    return torch.cat(parts)


def fused_linear_sequence_consistent_gift_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    eta: float = 20.0,
    segment_ids: torch.Tensor | None = None,
    **gift: object,
) -> torch.Tensor:
    """Chunked sequence-consistent GIFT: per-token gains g_t (see sequence_gains) from a first
    no-grad pass over the reference's gold log-probabilities, then fused_linear_gift_loss.

    labels: (B, T), one sequence per row (or packed, separated by segment_ids).
    gift: every keyword of fused_linear_gift_loss but beta (the gains take its place): the
    reference (ref_hidden, ref_weight, ref_bias, ref_logit_map, or ref_logits_fn), smoothing,
    bias, ignore_index, chunk_size, stats, kernel, logit_map.
    Costs one extra reference logits pass (the gains need the whole gold suffix).
    """
    if "beta" in gift:
        raise TypeError("fused_linear_sequence_consistent_gift_loss: the gains replace beta")
    smoothing = check_smoothing(gift.pop("smoothing", 0.0))
    ignore_index = gift.get("ignore_index", -100)
    h, lab, valid, chunk = _prepare(hidden, weight, labels, ignore_index, gift.get("chunk_size"))
    ref = [gift.pop(k, None) for k in ("ref_hidden", "ref_weight", "ref_bias", "ref_logits_fn")]
    ref_fn = _ref_fn(*ref, h.shape[0], weight.shape[0], gift.pop("ref_logit_map", None))
    gold = _gold_logp_chunked(ref_fn, lab, valid, smoothing, chunk)
    gains = sequence_gains(
        gold.reshape(labels.shape), valid.reshape(labels.shape), eta, segment_ids
    )
    return fused_linear_gift_loss(
        hidden, weight, labels, ref_logits_fn=ref_fn, beta=gains, smoothing=smoothing, **gift
    )
