"""Token objectives over logits: GIFT, SFT and the baselines, dense and chunked (fused-linear).

Every objective is written once here; the trainer, the RL loop, notebooks and benchmarks call
these. This package never imports giftlab.theory (tests hold one against the other).

`OBJECTIVES` maps a config name to (function, needs_ref): every function is called as
`fn(logits, ref_logits, labels, **hyper, ignore_index=..., reduction=...)`.
"""

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
)
from giftlab.losses.grpo import group_advantages, grpo_loss, kl_estimate

OBJECTIVES = {
    "sft": (sft_loss, False),
    "gift": (gift_loss, True),
    "gift_seq": (sequence_consistent_gift_loss, True),
    "sft_entropy": (sft_entropy_loss, False),
    "label_smoothing": (label_smoothing_loss, False),
    "dft": (dft_loss, False),
    "asft": (asft_loss, True),
    "psft": (psft_loss, False),
    "kd_base": (kd_to_base_loss, True),
}

__all__ = [
    "OBJECTIVES",
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
    "sft_entropy_loss",
    "sft_loss",
]
