"""The reference trainer: config dataclass, the explicit loop, atomic checkpoints."""

from giftlab.train.config import TrainConfig, config_help
from giftlab.train.loop import NonFiniteLossError, train

__all__ = ["NonFiniteLossError", "TrainConfig", "config_help", "train"]
