"""giftlab: exact theory, losses and a compact trainer for GIFT (finite-temperature SFT)."""

__version__ = "0.1.0"
