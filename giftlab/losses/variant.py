"""A user's target variant as a training objective: `objective=MODULE:FUNCTION` (giftlab.variants).

The variant q = f(pi0, y, beta) is trained with the cross-entropy to its target,

    L = mean_t -sum_a q_t,a log softmax(z_t)_a,   q_t = f(softmax(z0_t), y_t, beta)  (no gradient),

dL/dz = softmax(z) - q (rows of q sum to 1). When f computes on torch tensors (written with
giftlab.variants' helpers, or given as MODULE:FUNCTION_torch) the loss runs in torch, dense and
chunked (fused-linear: the chunking of giftlab.losses.fused, this target per chunk); otherwise its
numpy form runs on the host (`target_cross_entropy`: dense float64, for small runs). The torch form
is held to the numpy one on random inputs before it is used. Per-token statistics describe the
variant's own target; its gate is the one-hot share of the target,
w = 1 - (1 - q(y)) / (1 - pi0(y)) (GIFT's w_t for GIFT's target).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

from giftlab.losses._common import check_pair_loss, reduce, safe_labels, upcast
from giftlab.losses.fused import _FusedLinearTokenLoss, _post, _prepare, _ref_fn
from giftlab.losses.gift import chunk_token_stats
from giftlab.variants import VariantError, is_variant_spec, load_variant, torch_form

PROBE_VALUES = (0.1, 1.0, 5.0, 50.0)  # the values the torch form is checked at
VARIANT_PATHS: dict[str, str] = {}  # spec -> which path it trains on, in words (logged at start)


def variant_gate(q_gold: torch.Tensor, p0_gold: torch.Tensor) -> torch.Tensor:
    """The one-hot share w of a target q = (1 - w) pi0 + w onehot(y): 1 - (1 - q(y)) / (1 - pi0(y))
    (1 where pi0(y) = 1)."""
    denom = 1 - p0_gold
    return torch.where(denom > 0, 1 - (1 - q_gold) / denom.clamp_min(1e-30), 1.0)


def _checked_target(spec: str, fn, base: torch.Tensor, tokens: torch.Tensor, value: float):
    q = fn(base, tokens, value)
    if not isinstance(q, torch.Tensor) or q.shape != base.shape:
        raise VariantError(f"{spec}: the torch form returned {type(q).__name__}, not a tensor")
    return q


class _LeftTorch(TypeError):
    pass


@contextmanager
def _no_numpy_escape():
    """Within: a torch tensor turned into a numpy array raises. A target that mixes numpy into
    torch would work on the CPU, through the host, and fail on a GPU: it is no torch form."""

    def refuse(*args, **kwargs):
        raise _LeftTorch("it turns a torch tensor into a numpy array")

    saved = torch.Tensor.__array__, torch.Tensor.__array_wrap__
    torch.Tensor.__array__ = refuse
    torch.Tensor.__array_wrap__ = refuse
    try:
        yield
    finally:
        torch.Tensor.__array__, torch.Tensor.__array_wrap__ = saved


def probe_torch_form(spec: str, numpy_fn, torch_fn) -> str | None:
    """None when torch_fn(torch inputs) stays in torch and equals numpy_fn(numpy inputs)
    (float64, rtol 1e-9) at PROBE_VALUES; else why not, in words."""
    gen = np.random.default_rng(0)
    base = gen.dirichlet(np.full(7, 0.5), size=5)
    tokens = gen.integers(0, 7, size=5)
    for value in PROBE_VALUES:
        want = np.asarray(numpy_fn(base.copy(), tokens.copy(), value), dtype=np.float64)
        try:
            with _no_numpy_escape():
                got = _checked_target(
                    spec, torch_fn, torch.as_tensor(base), torch.as_tensor(tokens), value
                )
        except Exception as err:  # noqa: BLE001 - any failure means: no torch form
            return f"{type(err).__name__}: {err}"
        if not np.allclose(got.detach().cpu().numpy(), want, rtol=1e-9, atol=1e-12):
            return f"its torch output differs from its numpy output at value {value}"
    return None


def torch_target_loss(spec: str, target):
    """The dense loss of a torch target (float32, or float64 for float64 logits)."""

    def loss(logits, ref_logits, labels, *, beta=1.0, ignore_index=-100, reduction="mean"):
        valid = check_pair_loss(logits, ref_logits, labels, ignore_index, reduction)
        v = logits.shape[-1]
        base = torch.softmax(upcast(ref_logits.detach()), -1).reshape(-1, v)
        q = _checked_target(spec, target, base, safe_labels(labels, valid).reshape(-1), beta)
        logp = torch.log_softmax(upcast(logits), -1)
        per = -torch.where(q > 0, q.reshape(logp.shape).detach() * logp, 0.0).sum(-1)
        return reduce(per, valid, reduction)

    return loss


def _target_chunk(spec: str, target, value: float):
    """The per-chunk step of _FusedLinearTokenLoss for a torch target (fused.py's _torch_chunk
    with q = target(softmax(zr), y, value))."""

    def chunk(z, zr, labels, beta, smoothing, row_scale, stats):
        valid = labels != -100
        idx = safe_labels(labels, valid).unsqueeze(-1)
        logp = torch.log_softmax(upcast(z), -1)
        base = torch.softmax(upcast(zr), -1)
        q = _checked_target(spec, target, base, idx[:, 0], value).to(logp.dtype)
        # z is finite (checked by the caller), so logp is: sum_a q_a logp_a in one pass
        per_token = torch.where(valid, -torch.linalg.vecdot(q, logp), 0.0)
        if stats is not None:
            ref_logp, log_q = base.log(), q.log()
            gold = ref_logp.gather(-1, idx).squeeze(-1)
            for k, t in chunk_token_stats(logp, ref_logp, log_q, idx, gold, math.inf).items():
                stats[k] = torch.where(valid, t, 0.0)
            w = variant_gate(q.gather(-1, idx).squeeze(-1), gold.exp())
            stats["gate_w"] = torch.where(valid, w, 0.0)
        del base
        grad_z = logp.exp_().sub_(q)
        grad_z.mul_(row_scale.to(grad_z.dtype).unsqueeze(-1))
        return per_token, grad_z

    return chunk


def fused_linear_target_loss(spec: str, target):
    """The chunked form of a torch target, with the fused GIFT loss's keywords (the trainer's
    `Objective.fused` contract): (hidden, weight, labels, *, beta, ref_hidden, ref_weight, ...)."""

    def loss(
        hidden,
        weight,
        labels,
        *,
        beta=1.0,
        ref_hidden=None,
        ref_weight=None,
        ref_logits_fn=None,
        bias=None,
        ref_bias=None,
        ignore_index=-100,
        chunk_size=None,
        stats=None,
        kernel="auto",
        logit_map=None,
        ref_logit_map=None,
        smoothing=0.0,
    ):
        h, lab, _, chunk = _prepare(hidden, weight, labels, ignore_index, chunk_size)
        ref = _ref_fn(
            ref_hidden,
            ref_weight,
            ref_bias,
            ref_logits_fn,
            h.shape[0],
            weight.shape[0],
            ref_logit_map,
        )
        dummy = torch.zeros(lab.numel(), device=h.device)
        step = _target_chunk(spec, target, float(beta))
        return _FusedLinearTokenLoss.apply(
            h, weight, bias, lab, dummy, ref, 0.0, chunk, stats, step, _post(logit_map)
        )

    return loss


def check_numpy_target(spec: str, fn) -> None:
    """The variant on random inputs gives (L, V) rows of probabilities (finite, >= 0, summing to
    1 within 1e-6): the loss's gradient softmax(z) - q assumes it. VariantError otherwise."""
    gen = np.random.default_rng(1)
    base = gen.dirichlet(np.full(7, 0.5), size=5)
    tokens = gen.integers(0, 7, size=5)
    for value in PROBE_VALUES:
        try:
            q = np.asarray(fn(base.copy(), tokens.copy(), value), dtype=np.float64)
        except Exception as err:  # noqa: BLE001 - the user's function, named
            raise VariantError(
                f"{spec} raised {type(err).__name__} at value {value}: {err}"
            ) from None
        if q.shape != base.shape:
            raise VariantError(f"{spec} returned shape {q.shape} for base {base.shape}")
        if not np.isfinite(q).all() or (q < 0).any():
            raise VariantError(
                f"{spec} returned negative, NaN or infinite entries at value {value}"
            )
        worst = float(np.abs(q.sum(-1) - 1).max())
        if worst > 1e-6:
            raise VariantError(f"{spec}: its rows sum to {1 + worst:.9g}, not 1, at value {value}")


def register_variant(spec: str):
    """Make MODULE:FUNCTION an objective (its value the setting `beta`); returns (objective,
    message): the message says which path it trains on. VariantError when it cannot be loaded."""
    from giftlab.losses import OBJECTIVES, register_objective

    if spec in OBJECTIVES:
        return OBJECTIVES[spec], VARIANT_PATHS.get(spec)
    fn = load_variant(spec)
    check_numpy_target(spec, fn)
    torch_fn = torch_form(spec, fn)
    why = probe_torch_form(spec, fn, torch_fn)
    if why is None:
        obj = register_objective(
            spec,
            torch_target_loss(spec, torch_fn),
            needs_ref=True,
            hyper={"beta": "beta"},
            fused=fused_linear_target_loss(spec, torch_fn),
            target=fn,
        )
        VARIANT_PATHS[spec] = f"objective {spec}: a torch target, trained on the chunked path"
        return obj, VARIANT_PATHS[spec]
    obj = register_objective(spec, target=fn, hyper={"beta": "beta"})
    name = spec.partition(":")[2]
    VARIANT_PATHS[spec] = (
        f"objective {spec}: numpy target on the host (dense float64, slow: {why}); write it with "
        f"giftlab.variants' helpers (onehot, log, softmax, ...) or add {name}_torch to train on "
        "the chunked path"
    )
    return obj, VARIANT_PATHS[spec]


def objective_problem(name) -> str | None:
    """Why `name` is not an objective (None: it is one, a variant registered on the way)."""
    from giftlab.losses import OBJECTIVES

    if name in OBJECTIVES:
        return None
    if not is_variant_spec(name):
        return f"one of {sorted(OBJECTIVES)}, or a variant MODULE:FUNCTION"
    try:
        register_variant(name)
    except VariantError as err:
        return f"an importable variant MODULE:FUNCTION ({err})"
    return None
