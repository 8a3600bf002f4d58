"""The objective part of every settings schema: `giftlab train`, the pipeline's fine-tuning and
TRL's `GIFTConfig` declare these keys through this one dataclass and check them with its rules."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field

from giftlab.config import BETA_ALLOWED, beta_value
from giftlab.flatconfig import ConfigError, finite_non_negative, in_unit_interval
from giftlab.flatconfig import setting as _f
from giftlab.losses import HYPER_SETTINGS
from giftlab.losses.gift import DEFAULT_BETA
from giftlab.losses.variant import objective_problem


@dataclass
class ObjectiveSettings:
    """An objective of `giftlab.losses.OBJECTIVES` and its hyper-parameters."""

    objective: str = _f(
        "gift",
        "an objective of giftlab.losses.OBJECTIVES (register_objective), or a target variant "
        "MODULE:FUNCTION (giftlab.variants; its value is beta)",
    )
    beta: float = _f(
        DEFAULT_BETA,
        "GIFT inverse temperature (also the gate reported for other objectives); inf = SFT. "
        "Default 5: at the paper's 20 the bundled model's target is one-hot on every token",
    )
    eta: float = _f(20.0, "sequence reward scale of gift_seq")
    smoothing: float = _f(0.0, "uniform mixing of the reference in GIFT's target, [0, 1]")
    alpha: float = _f(0.01, "entropy bonus (sft_entropy) or KL weight (asft)")
    label_eps: float = _f(0.1, "label smoothing epsilon (label_smoothing)")
    clip_low: float = _f(0.2, "PSFT ratio clip below 1, in [0, 1)")
    clip_high: float = _f(0.2, "PSFT ratio clip above 1")
    hyper: dict = field(
        default_factory=dict,
        metadata={"help": "settings of registered objectives, {key: value} (or give KEY=VALUE)"},
    )

    EXTRA_SETTINGS: typing.ClassVar[dict] = HYPER_SETTINGS  # the live registry


def check_objective_settings(obj) -> None:
    """The registered objectives' settings in `obj.hyper`: known keys, each within its rule."""
    for key, value in (obj.hyper or {}).items():
        spec = HYPER_SETTINGS.get(key)
        if spec is None:
            raise ConfigError(
                f"hyper: unknown setting {key!r}; registered: {sorted(HYPER_SETTINGS)}", key
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not spec.rule(value):
            raise ConfigError(f"{key} must be {spec.allowed}, got {value!r}", key)


OBJECTIVE_RULES = (
    ("objective", lambda x: objective_problem(x) is None, objective_problem),
    ("beta", beta_value, BETA_ALLOWED),
    ("eta", beta_value, BETA_ALLOWED),
    ("smoothing", in_unit_interval, "in [0, 1]"),
    ("label_eps", in_unit_interval, "in [0, 1]"),
    ("alpha", finite_non_negative, "a finite number >= 0"),
    ("clip_low", lambda x: math.isfinite(x) and 0 <= x < 1, "in [0, 1)"),
    ("clip_high", finite_non_negative, "a finite number >= 0"),
)
