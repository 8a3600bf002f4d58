"""The order in which a loop visits its examples (training records, RL prompts)."""

from __future__ import annotations

import torch

from giftlab.errors import InputError


class DataOrder:
    """Epoch permutations seeded by (seed, epoch); the position is (epoch, offset) in examples.
    Each global micro-batch takes world * batch_size examples; process r gets its r-th slice.
    An epoch's remainder smaller than a global micro-batch is dropped."""

    def __init__(self, n: int, batch_size: int, world: int, rank: int, seed: int):
        self.n, self.bs, self.world, self.rank, self.seed = n, batch_size, world, rank, seed
        if n < batch_size * world:
            raise InputError(
                f"{n} examples cannot fill one global batch of {batch_size * world} "
                f"(batch size {batch_size} x {world} process(es)): lower the batch size or add data"
            )
        self.epoch, self.offset = 0, 0
        self._perm = self._make_perm()

    def _make_perm(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g, device="cpu")

    def next_indices(self) -> list[int]:
        span = self.bs * self.world
        if self.offset + span > self.n:
            self.epoch, self.offset = self.epoch + 1, 0
            self._perm = self._make_perm()
        start = self.offset + self.rank * self.bs
        self.offset += span
        return self._perm[start : start + self.bs].tolist()

    def state(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def load(self, state: dict) -> None:
        self.epoch, self.offset = state["epoch"], state["offset"]
        self._perm = self._make_perm()
