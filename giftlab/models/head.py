"""One head for every causal LM: the map from final hidden states to the logits the model's own
forward returns, so that every path giftlab builds from hidden states (the fused loss for the
policy and the reference, RL log-probabilities, drift, evaluation statistics, GIFTTrainer) gives
the model's own distribution.

    z  = h W^T (+ b)                          W: the output embedding (tied or not; a Linear, or
                                                 GPT-2's Conv1D stored transposed), b its bias
    z' = cap * tanh(scale * z / cap)          (cap None: z' = scale * z)

`scale` and `cap` come from the model's configuration (its text configuration for multimodal
wrappers), as the installed transformers applies them after the head:

    logit_scale             z * logit_scale                 (Cohere, Cohere2)
    logits_scaling          z / logits_scaling              (Granite, GraniteMoe, ...)
    output_multiplier       z * output_multiplier, before the cap
    final_logit_softcapping cap * tanh(z / cap)             (Gemma-2, Gemma-3, ...)
    logits_soft_cap         the same                        (RecurrentGemma)

A head this form cannot express is not guessed at: `check_head` runs the model once on a short
batch and compares the head's log-probabilities with those of `model(...).logits`; a model whose
forward does anything else to its logits (a transform unknown here, a sliced vocabulary) is
refused at start, naming its class and the largest difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from giftlab.errors import InputError, NonFiniteError

__all__ = ["Head", "LogitMap", "check_head", "lm_head", "UnsupportedHead"]


class UnsupportedHead(InputError):
    """The model's head cannot be reproduced from its hidden states (exit 2)."""


@dataclass(frozen=True)
class LogitMap:
    """z -> cap * tanh(scale * z / cap), or scale * z when cap is None; elementwise, so its
    Jacobian is the diagonal `grad`."""

    scale: float = 1.0
    cap: float | None = None

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.cap is None

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return z
        z = z * self.scale if self.scale != 1.0 else z
        return z if self.cap is None else torch.tanh(z / self.cap) * self.cap

    def grad(self, mapped: torch.Tensor) -> torch.Tensor:
        """dz'/dz from the mapped logits z': scale (1 - (z'/cap)^2), or scale."""
        if self.cap is None:
            return torch.full_like(mapped, self.scale)
        return (1.0 - (mapped / self.cap).square()) * self.scale


@dataclass
class Head:
    """The output embedding's weight (V, H) and bias (V,) or None, and the logit map after it."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    post: LogitMap
    model_class: str

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's logits from its final hidden states (..., H) -> (..., V)."""
        z = hidden @ self.weight.T
        if self.bias is not None:
            z = z + self.bias
        return self.post(z)


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _number(config, key):
    value = getattr(config, key, None)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def logit_map(model) -> LogitMap:
    """The post-head transform the installed transformers applies, read from the configuration."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    scale = 1.0
    if (s := _number(config, "logit_scale")) is not None:
        scale *= s
    if (s := _number(config, "logits_scaling")) is not None:
        if s == 0:
            raise UnsupportedHead(f"{type(model).__name__}: logits_scaling is 0")
        scale /= s
    if (s := _number(config, "output_multiplier")) is not None:
        scale *= s
    cap = _number(config, "final_logit_softcapping") or _number(config, "logits_soft_cap")
    return LogitMap(scale=scale, cap=cap if cap else None)


def lm_head(model) -> Head:
    """The Head of a causal LM (a PEFT wrapper is looked through); UnsupportedHead when the model
    has no output embedding giftlab can read."""
    base = _base(model)
    name = type(base).__name__
    out = base.get_output_embeddings()
    if out is None or not hasattr(out, "weight"):
        raise UnsupportedHead(f"{name}: the model has no output embedding (lm_head) to train")
    weight = out.weight
    if type(out).__name__ == "Conv1D":  # GPT-2 style: weight stored (H, V)
        weight = weight.T
    elif not isinstance(out, torch.nn.Linear):
        raise UnsupportedHead(
            f"{name}: its output embedding is a {type(out).__name__}, not a Linear or Conv1D; "
            "giftlab cannot form its logits from hidden states"
        )
    return Head(weight, getattr(out, "bias", None), logit_map(base), name)


def _tolerance(dtype: torch.dtype, scale: float) -> float:
    eps = torch.finfo(dtype).eps
    return 16 * eps * max(1.0, scale)


@torch.no_grad()
def check_head(model, vocab_size: int | None = None, tokens: int = 12, name: str = "model") -> Head:
    """The start-up self-check: log-probabilities from the decoder's hidden states through
    `lm_head(model)` must equal those of `model(...).logits` (dropout off) within the dtype's
    tolerance, on one short batch of 2 x `tokens` ids; else UnsupportedHead naming the class and
    the largest difference. Returns the Head. `name`: how the user named the model (the message)."""
    base = _base(model)
    head = lm_head(base)
    v = head.weight.shape[0] if vocab_size is None else vocab_size
    device = head.weight.device
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, v, (2, tokens), generator=g, device="cpu").to(device)
    mask = torch.ones_like(ids)
    was_training = base.training
    base.eval()
    try:
        want = base(input_ids=ids, attention_mask=mask, use_cache=False).logits
        hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        got = head.logits(hidden)
    finally:
        base.train(was_training)
    if got.shape != want.shape:
        raise UnsupportedHead(
            f"{name}: {head.model_class}'s forward returns logits of shape {tuple(want.shape)}, "
            f"its output embedding gives {tuple(got.shape)}: giftlab cannot reproduce this head"
        )
    if not bool(torch.isfinite(want).all()):
        raise NonFiniteError(
            f"{name}: {head.model_class}'s own logits are NaN or infinite on a short test batch: "
            "its weights are not finite"
        )
    dt = want.dtype if want.dtype != got.dtype and want.dtype == torch.float32 else got.dtype
    lw = torch.log_softmax(want.double(), -1)
    lg = torch.log_softmax(got.double(), -1)
    diff = float((lw - lg).abs().max())
    tol = _tolerance(dt, float(want.double().abs().max()))
    if not diff <= tol:
        raise UnsupportedHead(
            f"{name}: {head.model_class}'s head cannot be reproduced from its hidden states: the "
            f"log-probabilities differ from model(...).logits by up to {diff:.3g} (tolerance "
            f"{tol:.2g} for {str(dt).removeprefix('torch.')}); its forward transforms the logits "
            f"in a way giftlab does not know (known: {', '.join(KNOWN)})"
        )
    return head


KNOWN = (
    "output bias",
    "logit_scale",
    "logits_scaling",
    "output_multiplier",
    "final_logit_softcapping",
    "logits_soft_cap",
)
