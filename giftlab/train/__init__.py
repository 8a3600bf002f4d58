"""The reference trainer: config dataclass and the explicit loop (its run folder, data order and
seeding come from giftlab.runtime, the objective on a model from giftlab.engine, the objectives
from giftlab.losses)."""

from giftlab.train.config import TrainConfig, config_help
from giftlab.train.loop import NonFiniteLossError, train

__all__ = ["NonFiniteLossError", "TrainConfig", "config_help", "train"]
