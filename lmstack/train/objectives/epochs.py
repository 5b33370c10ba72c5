"""Epoch-style objectives for the small supervised tasks (dual and cross encoders, extractive readers, choice
heads): seeded shuffled epochs over a list of examples, on the one ``Trainer``.

A task subclasses ``EpochObjective`` with its ``loss(model, batch)`` (``batch``: a list of items);
``train_epochs`` runs it with the settings these tasks were measured with (README figures, quality tests):
AdamW with weight decay 0.01 on every parameter and betas (0.9, 0.999), fp32, clipping at 1, a constant LR or
a linear warmup (``warmup``: the share of steps) then linear decay to zero, an optional time budget, no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from lmstack.train.batching import EpochBatches
from lmstack.train.config import LoopConfig
from lmstack.train.objective import Objective
from lmstack.train.trainer import Trainer

T = TypeVar("T")


class EpochObjective(Objective):
    """An objective over ``items`` in epochs drawn from ``seed``; subclasses give ``loss``. No eval splits;
    the epoch order and position are the checkpointable state."""

    eval_splits = ()

    def __init__(self, items: Sequence[T], batch_size: int, seed: int):
        self.batches = EpochBatches(items, batch_size, seed)

    def batch(self, split: str, rng: torch.Generator) -> list[T]:
        return self.batches.next()

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)


def train_epochs(objective: EpochObjective, model: nn.Module, *, epochs: int, lr: float, seed: int,
                 warmup: float | None = None, clip: float = 1.0, max_seconds: float | None = None,
                 desc: str = "train", show_progress: bool = False) -> dict[str, Any]:
    """Train ``model`` (on the device it is on) for ``epochs`` passes of ``objective``'s batches; returns
    steps, first_loss / last_loss (single steps), loss_first / loss_last (means of the first / last tenth of
    the steps) and seconds. The model is left in eval mode."""
    steps = objective.batches.steps(epochs)
    cfg = LoopConfig(max_iters=steps, batch_size=objective.batches.batch_size, lr=lr, min_lr=0.0, seed=seed,
                     schedule="constant" if warmup is None else "linear",
                     warmup_iters=0 if warmup is None else warmup * steps, weight_decay=0.01, decay_all=True,
                     beta2=0.999, fused_optimizer=False, grad_clip=clip, max_seconds=max_seconds, precision="fp32",
                     device=str(next(model.parameters()).device), log_interval=1, eval_interval=steps,
                     checkpoint_interval=steps)
    run = Trainer(objective, cfg, model=model, progress=show_progress, desc=desc).run()
    return {"steps": run["iters"], "first_loss": run["first_loss"], "last_loss": run["loss"],
            "loss_first": run["loss_first"], "loss_last": run["loss_last"], "seconds": run["wall_s"]}
