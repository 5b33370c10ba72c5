"""Epoch training for the small supervised tasks: dual and cross encoders, extractive readers, choice heads.

Each task says how a batch of its examples becomes a loss; ``fit`` does the rest the same way for all of them:
seeded shuffling, AdamW, optional linear warmup and decay, gradient clipping, a progress bar, a time budget.
(Pretraining and fine-tuning language models use ``train.loop.Run``, with checkpoints and exact resume.)
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
from torch import nn
from tqdm import tqdm

T = TypeVar("T")


def shuffled_batches(items: Sequence[T], batch_size: int, epochs: int, seed: int) -> Iterator[list[T]]:
    """Every item once per epoch, in an order drawn from ``seed``, ``batch_size`` at a time."""
    rng = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(items), generator=rng).tolist()
        for i in range(0, len(order), batch_size):
            yield [items[j] for j in order[i:i + batch_size]]


def fit(model: nn.Module, items: Sequence[T], loss_of: Callable[[list[T]], torch.Tensor], *, epochs: int,
        batch_size: int, lr: float, seed: int = 0, warmup: float | None = None, clip: float = 1.0,
        max_seconds: float | None = None, desc: str = "train", show_progress: bool = False) -> dict:
    """Train ``model`` on ``loss_of(batch)`` over shuffled batches of ``items``; returns the losses and timing.

    ``warmup``: the share of steps with a linear warmup, then linear decay to zero (None: constant ``lr``).
    ``max_seconds``: stop early once this much time has passed.
    """
    steps = epochs * math.ceil(len(items) / batch_size)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    if warmup is not None:
        ramp = max(1, warmup * steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: min((t + 1) / ramp, (steps - t) / steps))
    model.train()
    losses, start = [], time.perf_counter()
    with tqdm(total=steps, desc=desc, file=sys.stderr, disable=not show_progress, mininterval=1.0) as bar:
        for batch in shuffled_batches(items, batch_size, epochs, seed):
            loss = loss_of(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            if warmup is not None:
                schedule.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
    model.eval()
    k = max(1, len(losses) // 10)
    return {"steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1],
            "loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k,
            "seconds": time.perf_counter() - start}
