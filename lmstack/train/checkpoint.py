"""Resumable checkpoints: the trained weights plus the trainer's state.

``out/checkpoint/`` holds the trainable state as the objective writes it (a Hugging Face model directory when
pretraining or fully fine-tuning; only the trained parameters with a PEFT method), and ``trainer_state.pt``
(optimizer moments, RNG states, the data sampler's generator, the objective's data position) +
``trainer_state.json`` (iteration, config).
The folder is swapped in whole (``atomic_dir``), so ``kill -9`` at any moment leaves the previous checkpoint.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lmstack.config import to_dict
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json


RUN_MARKERS = {"checkpoint": "checkpoint/trainer_state.pt", "metrics.jsonl": "metrics.jsonl"}  # what every run
# the trainer starts in a folder leaves there


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a run over an earlier one in ``out`` (its checkpoint or its metrics.jsonl there) unless
    ``resume`` continues it or ``overwrite`` replaces it; asking for both is an error too. Called before anything
    is written."""
    if resume and overwrite:
        raise LmstackError("--resume continues OUT's run and --overwrite replaces it: give one of them")
    found = [name for name, file in RUN_MARKERS.items() if (Path(out) / file).is_file()]
    if not resume and not overwrite and found:
        raise LmstackError(f"{out} holds an earlier run's {found[0]}: pass --resume to continue it or "
                           "--overwrite to start afresh, or choose another --out")


def discard_checkpoint(out: Path) -> None:
    """Delete ``out``'s checkpoint before an ``--overwrite`` run starts (once its inputs are validated), so a
    later ``--resume`` can never continue the replaced run with the new one's metrics."""
    shutil.rmtree(Path(out) / "checkpoint", ignore_errors=True)


@dataclass
class TrainerState:
    iter: int  # optimizer steps completed
    tokens: int  # training tokens (or examples: what the objective counts) consumed
    best_val_loss: float | None = None


def save_checkpoint(path: Path, write_weights: Callable[[Path], None], optimizer: torch.optim.Optimizer,
                    state: TrainerState, data_rng: torch.Generator, config=None, data_state: dict | None = None
                    ) -> None:
    """``write_weights(folder)`` writes the model (or trainable) files into the checkpoint being assembled;
    ``data_state`` (tensors, numbers, lists) is what an epoch-style objective needs to continue its order."""
    with atomic_dir(path) as tmp:
        write_weights(tmp)
        torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    "data_rng": data_rng.get_state(), "data_state": data_state or {}}, tmp / "trainer_state.pt")
        write_json(tmp / "trainer_state.json", {**state.__dict__, "config": to_dict(config) if config else None})


def load_checkpoint(path: Path, load_weights: Callable[[Path], nn.Module], optimizer_factory,
                    data_rng: torch.Generator) -> tuple[nn.Module, torch.optim.Optimizer, TrainerState, dict]:
    """Restore model, optimizer, RNGs and counters; ``load_weights(folder)`` rebuilds the model from what
    ``save_checkpoint``'s ``write_weights`` wrote, ``optimizer_factory(model)`` builds the optimizer.
    Returns them with the saved ``data_state``."""
    if not (path / "trainer_state.pt").is_file():
        raise LmstackError(f"{path}: no checkpoint to resume from (trainer_state.pt missing)")
    model = load_weights(path)
    try:
        saved = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: name it, never unpickle arbitrary objects
        raise LmstackError(f"{path / 'trainer_state.pt'}: unreadable ({str(e).splitlines()[0]})") from e
    optimizer = optimizer_factory(model)
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    data_rng.set_state(saved["data_rng"])
    meta = read_json(path / "trainer_state.json")
    return (model, optimizer, TrainerState(meta["iter"], meta["tokens"], meta.get("best_val_loss")),
            saved.get("data_state", {}))
