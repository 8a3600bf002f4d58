"""GIFTConfig: TRL's SFTConfig plus giftlab's objective settings (declared once, in
giftlab.losses.settings.ObjectiveSettings), checked by the same rules as `giftlab train`."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from giftlab.engine.cache import DTYPES
from giftlab.flatconfig import ConfigError, at_least, check_rules, one_of
from giftlab.losses.fused import KERNELS
from giftlab.losses.settings import (
    OBJECTIVE_RULES,
    ObjectiveSettings,
    check_objective_settings,
)

__all__ = ["GIFTConfig"]


@dataclass
class GIFTConfig(ObjectiveSettings, SFTConfig):
    """SFTConfig plus the objective settings of `giftlab train` (declared once, in
    giftlab.losses.settings.ObjectiveSettings: objective, beta, eta, smoothing, alpha, label_eps,
    clip_low, clip_high) and the fused head's. Bad values raise ConfigError naming the key.

    Where it departs from TRL, on purpose:
    - `beta` is GIFT's inverse temperature on the gold token's reward: the larger it is, the
      further the target moves from the reference, towards one-hot SFT (beta = inf is SFT,
      beta = 0 is the reference itself). DPO's `beta` runs the other way (a larger DPO beta keeps
      the policy closer to its reference).
    - `assistant_only_loss` defaults to True (TRL: False), as `giftlab train` trains: on
      conversational data only the assistant turns are targets. GIFTTrainer says so at start;
      pass False to train on every token.
    - `loss_type` (TRL's nll or dft) is refused unless "nll": the loss is `objective` (for DFT,
      objective="dft").
    """

    chunked: bool = field(
        default=True, metadata={"help": "fused chunked loss (sft, gift, gift_seq)"}
    )
    chunk_size: int = field(default=0, metadata={"help": "tokens per chunk (0: automatic)"})
    kernel: str = field(
        default="auto", metadata={"help": "loss head: auto (Triton on CUDA), torch or triton"}
    )
    top_k: int = field(default=10, metadata={"help": "K of the top-K overlap diagnostic"})
    ref_model_path: str | None = field(
        default=None, metadata={"help": "reference model; None: a frozen copy of the initial model"}
    )
    ref_cache: str = field(
        default="",
        metadata={
            "help": "a reference cache folder (giftlab.refcache): built here once, from the "
            "prepared training and evaluation data, when it holds no cache yet; training then "
            "keeps no reference model (memory as SFT's)"
        },
    )
    ref_cache_top_k: int | None = field(
        default=None,
        metadata={
            "help": "K of a cache built here (None: 64, giftlab ref-cache's default); an existing cache of another K is refused"
        },
    )
    ref_cache_dtype: str | None = field(
        default=None,
        metadata={
            "help": f"log-probability storage of a cache built here, one of {list(DTYPES)} "
            "(None: float16); an existing cache of another dtype is refused"
        },
    )
    assistant_only_loss: bool = field(
        default=True,
        metadata={
            "help": "conversational ('messages') data train on the assistant turns only, as "
            "giftlab train does (the mask is built from the chat template, with or without "
            "generation markers); False: on every token"
        },
    )

    def __post_init__(self):
        super().__post_init__()
        check_rules(
            self,
            (
                *OBJECTIVE_RULES,
                ("chunk_size", at_least(0), ">= 0 (0: automatic)"),
                ("kernel", one_of(*KERNELS), f"one of {list(KERNELS)}"),
                ("top_k", at_least(1), ">= 1"),
            ),
        )
        if self.ref_cache_top_k is not None and (
            isinstance(self.ref_cache_top_k, bool)
            or not isinstance(self.ref_cache_top_k, int)
            or self.ref_cache_top_k < 1
        ):
            raise ConfigError(
                f"ref_cache_top_k must be an integer >= 1 (or None), got {self.ref_cache_top_k!r}",
                "ref_cache_top_k",
            )
        if self.ref_cache_dtype is not None and self.ref_cache_dtype not in DTYPES:
            raise ConfigError(
                f"ref_cache_dtype must be one of {list(DTYPES)} (or None), got "
                f"{self.ref_cache_dtype!r}",
                "ref_cache_dtype",
            )
        check_objective_settings(self)
        if getattr(self, "loss_type", "nll") != "nll":
            raise ConfigError(
                f"loss_type={self.loss_type!r} is TRL's own loss, which GIFTTrainer replaces with "
                f"objective={self.objective!r}; leave loss_type at 'nll' and choose the objective "
                "(objective='dft' for DFT)",
                "loss_type",
            )
        if getattr(self, "use_liger_kernel", False):
            raise ConfigError(
                "use_liger_kernel=True: GIFTTrainer computes its loss with giftlab's own fused "
                "head (chunked=True, kernel=...), which Liger's patched loss would not see; "
                "leave use_liger_kernel at False",
                "use_liger_kernel",
            )
