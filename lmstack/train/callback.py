"""``Callback``: the hooks the one ``Trainer`` calls (as transformers' ``TrainerCallback``); override the ones you
need. Kept apart from the loop so that callbacks the trainer builds from its config (the spike guard) can
subclass it without an import cycle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from lmstack.train.trainer import Trainer


class Callback:
    """Hooks into the loop; override the ones you need. ``trainer`` gives the model, optimizer, state, config."""

    def on_before_optimizer_step(self, trainer: Trainer, loss: float, grad_norm: torch.Tensor) -> bool:
        """After backward and clipping, before ``optimizer.step``: ``loss`` is the step's mean loss, ``grad_norm``
        the gradient's total L2 norm before clipping. Return False to skip the update (the gradients are zeroed;
        the iteration still counts and its batches stay consumed)."""
        return True

    def on_step_end(self, trainer: Trainer, loss: float, metrics: dict[str, Any]) -> None:
        """After each optimizer step (``trainer.state.iter`` already counts it)."""

    def on_eval(self, trainer: Trainer, losses: dict[str, float]) -> None:
        """After an evaluation: the mean loss of each eval split."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After a checkpoint was written to ``path``."""

    def on_restore(self, trainer: Trainer, path: Path) -> None:
        """After the trainer resumed from the checkpoint in ``path``."""

    def state_dict(self) -> dict:
        """What the callback must carry across a resume (numbers, lists, tensors), saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a ``state_dict`` (called on resume, before ``on_restore``)."""

    def summary(self, trainer: Trainer) -> dict[str, Any]:
        """Figures merged into the run's result dict at the end."""
        return {}
