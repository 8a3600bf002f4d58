"""Token objectives over logits: GIFT, SFT and the baselines, dense and chunked (fused-linear).

Every objective is written once here; the trainer, the RL loop, notebooks and benchmarks call
these. This package never imports giftlab.theory (tests hold one against the other).

`OBJECTIVES` maps a config name to an `Objective`: its dense loss, called as
`loss(logits, ref_logits, labels, **hyper, ignore_index=..., reduction=...)`, whether it needs the
reference, its hyper-parameters (loss keyword -> config key), and its fused-linear form if it has one.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from giftlab.losses.baselines import (
    asft_loss,
    dft_loss,
    label_smoothing_loss,
    ppo_clip_token_loss,
    psft_loss,
    sft_entropy_loss,
    sft_loss,
)
from giftlab.losses.cached import CachedReference, cached_reference_logp, truncation_bounds
from giftlab.losses.fused import (
    default_chunk_size,
    fused_linear_gift_loss,
    fused_linear_sequence_consistent_gift_loss,
    fused_linear_sft_loss,
)
from giftlab.losses.gift import (
    STAT_NAMES,
    gate_weight,
    gift_log_target,
    gift_loss,
    gift_target,
    gift_token_stats,
    kd_to_base_loss,
    sequence_consistent_gift_loss,
    sequence_gains,
    sequence_gains_from_logits,
)
from giftlab.losses.grpo import group_advantages, grpo_loss, kl_estimate


@dataclass(frozen=True)
class Hyper:
    """A hyper-parameter that a registered objective adds to every settings schema (`giftlab train
    KEY=VALUE`, the pipeline's `inits=NAME:VALUE`, `GIFTConfig(hyper={KEY: VALUE})`).

    default: its value when not given.  rule: a predicate on the value.  allowed: the rule in words
    (error messages).  help: the `--help` line."""

    default: float
    rule: Callable = field(default=lambda x: x == x)  # noqa: PLR0124 - rejects NaN
    allowed: str = "a number"
    help: str = ""


@dataclass(frozen=True)
class Objective:
    """One training objective as the trainer sees it.

    loss: the dense form over logits.  needs_ref: takes the reference's logits.
    hyper: loss keyword -> settings key (e.g. {"eps": "label_eps"}); the first is the objective's
        main parameter, the one the pipeline's `inits=NAME:VALUE` sets.
    fused: the chunked fused-linear form from hidden states (sft, gift, gift_seq), or None.
    per_sequence: the loss needs whole sequences (labels (B, T) and segment_ids).
    needs_old_logp: the loss takes the sampling policy's gold log-probabilities (psft).
    target: optional numpy form of the loss's target, (base (L, V), tokens (L,), value) -> (L, V)
        (the `giftlab validate` contract); the loss is then CE(target, policy), checked at
        registration on random inputs.
    """

    loss: Callable
    needs_ref: bool
    hyper: dict = field(default_factory=dict)
    fused: Callable | None = None
    per_sequence: bool = False
    needs_old_logp: bool = False
    target: Callable | None = None

    @property
    def main_hyper(self) -> str | None:
        """The settings key of the main parameter (None: the objective takes none)."""
        return next(iter(self.hyper.values()), None)

    def hyper_values(self, config) -> dict:
        """{loss keyword: value} read from a settings object: its own field, else its `hyper`
        mapping (a registered objective's settings), else the registered default."""
        extra = getattr(config, "hyper", None) or {}
        out = {}
        for arg, key in self.hyper.items():
            if hasattr(config, key) and key != "hyper":
                out[arg] = getattr(config, key)
            else:
                out[arg] = extra.get(key, HYPER_SETTINGS[key].default)
        return out


OBJECTIVES: dict[str, Objective] = {}
HYPER_SETTINGS: dict[str, Hyper] = {}  # settings keys added by registered objectives
HYPER_OWNERS: dict[str, str] = {}  # setting key -> the objective that registered it


def target_cross_entropy(target: Callable, arg: str | None, default=None) -> Callable:
    """The loss of a numpy target: L = -sum_a q_a log softmax(z)_a, q = target(softmax(z_ref),
    labels, value) with no gradient (a constant of the policy); the same checks and reductions
    as every loss here. The target runs in float64 numpy on the host: for variants and small runs;
    a large run writes the loss in torch and registers both (checked one against the other)."""
    import numpy as np
    import torch

    from giftlab.losses._common import check_pair_loss, reduce, safe_labels, upcast

    def loss(logits, ref_logits, labels, *, ignore_index=-100, reduction="mean", **hyper):
        valid = check_pair_loss(logits, ref_logits, labels, ignore_index, reduction)
        base = torch.softmax(ref_logits.detach().double(), -1).reshape(-1, logits.shape[-1])
        tokens = safe_labels(labels, valid).reshape(-1)
        q = target(base.cpu().numpy(), tokens.cpu().numpy(), hyper.get(arg, default))
        q = torch.as_tensor(np.asarray(q), device=logits.device).reshape(logits.shape)
        logp = torch.log_softmax(upcast(logits), -1)
        return reduce(-(q.to(logp.dtype) * logp).sum(-1), valid, reduction)

    return loss


def register_objective(
    name: str,
    loss: Callable | None = None,
    *,
    needs_ref: bool = False,
    hyper: dict | None = None,
    fused: Callable | None = None,
    per_sequence: bool = False,
    needs_old_logp: bool = False,
    target: Callable | None = None,
) -> Objective:
    """Make `name` an objective of `giftlab train objective=NAME`, `giftlab pipeline
    inits=NAME[:VALUE]` and `GIFTTrainer(objective=NAME)`; the built-ins go through this call.

    loss: `loss(logits, ref_logits, labels, **hyper, ignore_index=-100, reduction="mean")`, logits
        (..., V), labels (...); ref_logits None unless needs_ref.
    hyper: {loss keyword: settings key} (a key the settings already have: beta, eta, smoothing,
        alpha, label_eps, clip_low, clip_high) or {loss keyword: Hyper(...)} (a new setting named
        after the keyword, e.g. `giftlab train objective=mix weight=0.3`).
    target: the numpy target of a CE-to-target loss (see Objective); when given, the torch loss is
        checked against CE(target, softmax(logits)) on random float64 inputs before registering.
        With `loss=None` the loss is built from the target (`target_cross_entropy`, needs_ref):
        a variant written once serves `giftlab validate` and both trainers.
    """
    from giftlab.variants import is_variant_spec

    if not isinstance(name, str) or not (name.isidentifier() or is_variant_spec(name)):
        raise ValueError(
            f"register_objective: name must be an identifier (or MODULE:FUNCTION), got {name!r}"
        )
    generated = loss is None and target is not None
    if generated:
        needs_ref = True
    elif not callable(loss):
        raise ValueError(f"register_objective({name!r}): give a loss function, or a target")
    mapping, new_settings = {}, {}
    for arg, spec in (hyper or {}).items():
        if isinstance(spec, Hyper):
            owner = HYPER_OWNERS.get(arg, name)
            if owner != name:
                raise ValueError(
                    f"register_objective({name!r}): the setting {arg!r} belongs to objective "
                    f"{owner!r}; name the keyword differently"
                )
            new_settings[arg] = spec
            mapping[arg] = arg
        elif isinstance(spec, str):
            mapping[arg] = spec
        else:
            raise ValueError(
                f"register_objective({name!r}): hyper[{arg!r}] must be a settings key or a "
                f"Hyper, got {spec!r}"
            )
    if generated:
        main = next(iter(mapping), None)
        spec = new_settings.get(main) or HYPER_SETTINGS.get(main)
        loss = target_cross_entropy(target, main, spec.default if spec else None)
    obj = Objective(loss, needs_ref, mapping, fused, per_sequence, needs_old_logp, target)
    if target is not None and not generated:
        check_target_against_loss(name, obj, new_settings)
    HYPER_SETTINGS.update(new_settings)  # only once every check passed
    HYPER_OWNERS.update(dict.fromkeys(new_settings, name))
    OBJECTIVES[name] = obj
    return obj


def check_target_against_loss(
    name: str, obj: Objective, settings: dict | None = None, seed: int = 0
) -> None:
    """The torch loss equals CE(target, softmax(logits)) (float64, random logits, the main
    parameter at those of 0.1, 0.5, 3 and 20 its rule allows); ValueError otherwise."""
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(6, 7, generator=gen, dtype=torch.float64, device="cpu")
    z_ref = torch.randn(6, 7, generator=gen, dtype=torch.float64, device="cpu")
    y = torch.randint(0, 7, (6,), generator=gen, device="cpu")
    main = obj.main_hyper
    known = HYPER_SETTINGS | (settings or {})
    rule = known[main].rule if main in known else (lambda x: True)
    for value in [v for v in (0.1, 0.5, 3.0, 20.0) if rule(v)] or [0.5]:
        kw = {arg: value for arg in list(obj.hyper)[:1]}
        got = obj.loss(z, z_ref if obj.needs_ref else None, y, **kw)
        base = torch.softmax(z_ref, -1).numpy()
        q = torch.as_tensor(np.asarray(obj.target(base, y.numpy(), value), dtype=np.float64))
        want = -(q * torch.log_softmax(z, -1)).sum(-1).mean()
        if not torch.allclose(got.double(), want, rtol=1e-9, atol=1e-12):
            raise ValueError(
                f"register_objective({name!r}): the loss ({float(got):.9g}) is not the "
                f"cross-entropy to its target ({float(want):.9g}) at {kw}"
            )


# the built-in objectives: (name, loss, keywords of register_objective)
BUILT_IN = (
    ("sft", sft_loss, {"fused": fused_linear_sft_loss}),
    (
        "gift",
        gift_loss,
        {"needs_ref": True, "hyper": {"beta": "beta", "smoothing": "smoothing"}}
        | {"fused": fused_linear_gift_loss},
    ),
    (
        "gift_seq",
        sequence_consistent_gift_loss,
        {"needs_ref": True, "hyper": {"eta": "eta", "smoothing": "smoothing"}}
        | {"fused": fused_linear_sequence_consistent_gift_loss, "per_sequence": True},
    ),
    ("sft_entropy", sft_entropy_loss, {"hyper": {"alpha": "alpha"}}),
    ("label_smoothing", label_smoothing_loss, {"hyper": {"eps": "label_eps"}}),
    ("dft", dft_loss, {}),
    ("asft", asft_loss, {"needs_ref": True, "hyper": {"alpha": "alpha"}}),
    (
        "psft",
        psft_loss,
        {"hyper": {"clip_low": "clip_low", "clip_high": "clip_high"}, "needs_old_logp": True},
    ),
    ("kd_base", kd_to_base_loss, {"needs_ref": True}),
)
for _name, _loss, _kw in BUILT_IN:
    register_objective(_name, _loss, **_kw)

__all__ = [
    "HYPER_SETTINGS",
    "Hyper",
    "OBJECTIVES",
    "Objective",
    "check_target_against_loss",
    "register_objective",
    "target_cross_entropy",
    "STAT_NAMES",
    "CachedReference",
    "asft_loss",
    "cached_reference_logp",
    "truncation_bounds",
    "default_chunk_size",
    "dft_loss",
    "fused_linear_gift_loss",
    "fused_linear_sequence_consistent_gift_loss",
    "fused_linear_sft_loss",
    "gate_weight",
    "grpo_loss",
    "group_advantages",
    "kl_estimate",
    "gift_log_target",
    "gift_loss",
    "gift_target",
    "gift_token_stats",
    "kd_to_base_loss",
    "label_smoothing_loss",
    "ppo_clip_token_loss",
    "psft_loss",
    "sequence_consistent_gift_loss",
    "sequence_gains",
    "sequence_gains_from_logits",
    "sft_entropy_loss",
    "sft_loss",
]
