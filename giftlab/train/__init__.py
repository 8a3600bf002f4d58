"""The reference trainer: config dataclass and the explicit loop (its run folder, data order and
seeding come from giftlab.runtime, its objectives from giftlab.losses)."""

from giftlab.train.config import TrainConfig, config_help
from giftlab.train.loop import (
    CausalLMBody,
    Forward,
    Models,
    NonFiniteLossError,
    forward,
    objective_sum,
    token_stats,
    train,
)

__all__ = [
    "CausalLMBody",
    "Forward",
    "Models",
    "NonFiniteLossError",
    "TrainConfig",
    "config_help",
    "forward",
    "objective_sum",
    "token_stats",
    "train",
]
