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
class Objective:
    """One training objective as the trainer sees it.

    loss: the dense form over logits.  needs_ref: takes the reference's logits.
    hyper: loss keyword -> config key (e.g. {"eps": "label_eps"}).
    fused: the chunked fused-linear form from hidden states (sft, gift, gift_seq), or None.
    per_sequence: the loss needs whole sequences (labels (B, T) and segment_ids).
    needs_old_logp: the loss takes the sampling policy's gold log-probabilities (psft).
    """

    loss: Callable
    needs_ref: bool
    hyper: dict = field(default_factory=dict)
    fused: Callable | None = None
    per_sequence: bool = False
    needs_old_logp: bool = False

    def hyper_values(self, config) -> dict:
        """{loss keyword: value} read from a config object."""
        return {arg: getattr(config, key) for arg, key in self.hyper.items()}


OBJECTIVES = {
    "sft": Objective(sft_loss, False, fused=fused_linear_sft_loss),
    "gift": Objective(
        gift_loss, True, {"beta": "beta", "smoothing": "smoothing"}, fused_linear_gift_loss
    ),
    "gift_seq": Objective(
        sequence_consistent_gift_loss,
        True,
        {"eta": "eta", "smoothing": "smoothing"},
        fused_linear_sequence_consistent_gift_loss,
        per_sequence=True,
    ),
    "sft_entropy": Objective(sft_entropy_loss, False, {"alpha": "alpha"}),
    "label_smoothing": Objective(label_smoothing_loss, False, {"eps": "label_eps"}),
    "dft": Objective(dft_loss, False),
    "asft": Objective(asft_loss, True, {"alpha": "alpha"}),
    "psft": Objective(
        psft_loss, False, {"clip_low": "clip_low", "clip_high": "clip_high"}, needs_old_logp=True
    ),
    "kd_base": Objective(kd_to_base_loss, True),
}

__all__ = [
    "OBJECTIVES",
    "Objective",
    "STAT_NAMES",
    "asft_loss",
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
