"""The encoder tasks on the one ``Trainer``: seeded shuffled epochs over a list of examples.

Dual and cross encoders, extractive readers and choice heads each subclass ``EpochObjective`` with their loss;
``train_epochs`` runs one on ``lmstack.train.trainer.Trainer`` with the settings these tasks have always used:
AdamW (weight decay 0.01, betas 0.9 / 0.999), fp32, clipping at 1, a constant learning rate or a linear warmup
then linear decay to zero (``warmup``: the share of steps that warm up), an optional time budget, no files.
The optimizer is the one these tasks' figures (README, quality tests) were measured with: every parameter
decayed, 1-d ones too (``train.optim.build_optimizer`` spares them); on this chaotic small-data training that
difference alone moves the results. (Generic enough for ``lmstack.train``: it lives here until that adopts it.)
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar

import torch
from torch import nn

from lmstack.train.batching import EpochBatches
from lmstack.train.config import LoopConfig
from lmstack.train.objective import Objective
from lmstack.train.trainer import Trainer

T = TypeVar("T")


class EpochObjective(Objective):
    """An objective over ``items`` in epochs drawn from ``seed``; subclasses give ``loss(model, batch)``,
    where ``batch`` is a list of items. No eval splits; the epoch order is the checkpointable state."""

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
    """Train ``model`` (where it is) for ``epochs`` passes of ``objective``'s batches; returns steps,
    first_loss / last_loss (of single steps), loss_first / loss_last (means of the first / last tenth of
    the steps) and seconds. The model is left in eval mode."""
    steps = objective.batches.steps(epochs)
    cfg = LoopConfig(max_iters=steps, batch_size=objective.batches.batch_size, lr=lr, min_lr=0.0, seed=seed,
                     schedule="constant" if warmup is None else "linear",
                     warmup_iters=0 if warmup is None else warmup * steps, weight_decay=0.01, beta2=0.999,
                     grad_clip=clip, max_seconds=max_seconds, precision="fp32",
                     device=str(next(model.parameters()).device), log_interval=1, eval_interval=steps,
                     checkpoint_interval=steps)
    trainer = Trainer(objective, cfg, model=model, progress=show_progress, desc=desc)
    trainer.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                          betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    run = trainer.run()
    return {"steps": run["iters"], "first_loss": run["first_loss"], "last_loss": run["loss"],
            "loss_first": run["loss_first"], "loss_last": run["loss_last"], "seconds": run["wall_s"]}
