"""Seeded, shuffled epochs over a list of examples, with a position a checkpoint can hold.

The batching of the small supervised tasks (dual and cross encoders, readers, choice heads): every item once
per epoch, in an order drawn from ``seed`` epoch after epoch, ``batch_size`` at a time (the last batch of an
epoch may be smaller). ``state_dict`` / ``load_state_dict`` make a resumed run continue the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


class EpochBatches(Generic[T]):
    def __init__(self, items: Sequence[T], batch_size: int, seed: int):
        if not items or batch_size <= 0:
            raise ValueError(f"need items and a positive batch_size, got {len(items)} items, {batch_size}")
        self.items, self.batch_size = items, batch_size
        self.rng = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.pos = 0  # index into ``order`` of the next batch's first item
        self.epoch = 0  # epochs begun

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.items) / self.batch_size)

    def steps(self, epochs: int) -> int:
        """Batches in ``epochs`` epochs: the ``max_iters`` of a run over them."""
        return epochs * len(self)

    def next(self) -> list[T]:
        if self.pos >= len(self.order):
            self.order, self.pos = torch.randperm(len(self.items), generator=self.rng).tolist(), 0
            self.epoch += 1
        rows = self.order[self.pos:self.pos + self.batch_size]
        self.pos += len(rows)
        return [self.items[j] for j in rows]

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state(), "order": torch.tensor(self.order, dtype=torch.long), "pos": self.pos,
                "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
        self.order, self.pos, self.epoch = state["order"].tolist(), state["pos"], state["epoch"]
