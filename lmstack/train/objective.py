"""The ``Objective`` protocol: everything about a training task that the one ``Trainer`` does not decide.

An objective owns its data (``batch``: train and eval splits, drawn from the trainer's ``torch.Generator`` or
from its own checkpointable order, so a resumed run draws exactly what an uninterrupted one would), its loss
(``loss``, the hook trl's ``compute_loss`` is: subclass and override it), what a batch counts for tokens/s, and
its files: the trainable state a checkpoint holds (``write_state`` / ``restore``) and the trained artefact
(``save``). The trainer owns the rest: device, seed, optimizer, schedule, precision, accumulation, clipping,
evaluation, checkpoints, signals, progress, metrics and the time budget.

A new objective is one small class; methods with defaults need overriding only where the task differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lmstack.errors import LmstackError


class Objective(Protocol):
    """What is learned, from which batches, and how the result is written (see the module docstring)."""

    eval_splits: tuple[str, ...] = ("train", "val")  # splits ``batch`` can draw for evaluation; () for none

    def batch(self, split: str, rng: torch.Generator) -> Any:
        """The next batch of ``split``; tensors (or a tuple / dict of them) go to the device, anything else is
        passed to ``loss`` as is. Draw randomness from ``rng`` or from state kept in ``state_dict``."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """The scalar loss to minimise, and auxiliary figures (floats or 0-d tensors, such as an MoE balance
        term) logged beside it; the loss must already include any auxiliary term it trains on."""
        ...

    def count(self, batch: Any) -> int:
        """What ``batch`` counts for throughput: tokens (the default counts rows, i.e. examples)."""
        return len(batch)

    def build(self, device: torch.device) -> nn.Module:
        """The model to train, called after the trainer seeded torch (so its initial weights are the seed's)."""
        raise LmstackError(f"{type(self).__name__} builds no model: give the Trainer one (model=...)")

    def write_state(self, model: nn.Module, folder: Path) -> None:
        """Write what a checkpoint must hold of the model: by default just the trainable parameters."""
        save_file({n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  str(folder / "trainable.safetensors"))

    def restore(self, folder: Path, device: torch.device) -> nn.Module:
        """The model as ``write_state`` left it in ``folder``: by default ``build`` + the trainable parameters."""
        model = self.build(device)
        model.load_state_dict(load_file(str(folder / "trainable.safetensors"), device=str(device)), strict=False)
        return model

    def save(self, model: nn.Module, out: Path) -> Path | None:
        """Write the trained artefact under ``out`` (model/, adapter/ ...) at the end; returns its path."""
        return None

    def title(self, model: nn.Module) -> str:
        """The loss plot's title."""
        return type(self).__name__

    def state_dict(self) -> dict:
        """Data position beyond the trainer's generator (an epoch order, say), saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a ``state_dict``."""
