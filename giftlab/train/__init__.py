"""The reference trainer: config dataclass and the explicit loop (its run folder, data order and
seeding come from giftlab.runtime, its objectives from giftlab.losses)."""

from giftlab.runtime.drift import DRIFT_KEYS, drift_per_problem
from giftlab.runtime.objective import (
    CausalLMBody,
    Forward,
    Models,
    forward,
    objective_sum,
    token_stats,
)
from giftlab.train.config import TrainConfig, config_help
from giftlab.train.loop import NonFiniteLossError, train

__all__ = [
    "DRIFT_KEYS",
    "CausalLMBody",
    "Forward",
    "Models",
    "NonFiniteLossError",
    "TrainConfig",
    "config_help",
    "drift_per_problem",
    "forward",
    "objective_sum",
    "token_stats",
    "train",
]
