"""Training configs, the single source of truth for a run (YAML and ``--key value`` only fill them).

``LoopConfig`` holds what the one ``Trainer`` needs (optimizer, schedule, evaluation, checkpoints, precision,
time budget); ``TrainConfig`` (pretraining) and ``FinetuneConfig`` (``lmstack.adapt``) add what their data and
model are. The encoder tasks (retrieval, qa) fill a ``LoopConfig`` from their own arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lmstack.config import check_seed
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig


@dataclass
class LoopConfig:
    batch_size: int = 12
    grad_accum: int = 1
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: = max_iters
    schedule: Literal["cosine", "linear", "constant"] = "cosine"  # after the warmup: to min_lr, to zero, flat
    weight_decay: float = 0.1
    decay_all: bool = False  # decay every parameter, biases and norm gains too (torch's AdamW default)
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20  # batches per split when estimating the loss during training
    log_interval: int = 10
    checkpoint_interval: int = 250  # also written at each eval and at the end
    seed: int = 1337
    device: str = "auto"  # auto: cuda if available, else cpu
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast where the hardware has bf16 matmuls
    compile: bool = False  # torch.compile the model (first steps are slow while it compiles)
    fused_optimizer: bool | None = None  # None: fused AdamW (one kernel per step) on CUDA and CPU
    max_seconds: float | None = None  # time budget: stop (with a final evaluation and checkpoint) once spent

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "max_iters", "eval_interval", "eval_iters", "log_interval",
                     "checkpoint_interval"):
            if getattr(self, name) <= 0:
                raise LmstackError(f"{name} must be positive, got {getattr(self, name)}")
        if self.warmup_iters < 0:
            raise LmstackError(f"warmup_iters must be 0 or more, got {self.warmup_iters}")
        if self.lr_decay_iters is not None and self.lr_decay_iters <= 0:
            raise LmstackError(f"lr_decay_iters must be positive (or None: = max_iters), got {self.lr_decay_iters}")
        for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip", "max_seconds"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise LmstackError(f"{name} must be a finite number, got {value!r}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise LmstackError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr} min_lr={self.min_lr}")
        for name in ("beta1", "beta2"):  # AdamW's moment decay rates (Kingma & Ba 2015)
            if not 0 <= getattr(self, name) < 1:
                raise LmstackError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise LmstackError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise LmstackError(f"max_seconds must be positive, got {self.max_seconds}")
        check_seed(self.seed, "seed")


@dataclass
class TrainConfig(LoopConfig):
    data: Path = Path("data")  # a folder written by `lmstack prepare`
    out: Path = Path("runs/train")
    model: ModelConfig = field(default_factory=ModelConfig)  # vocab_size is taken from the data's tokenizer
    objective: Literal["causal", "mlm"] = "causal"  # mlm: a BERT-style encoder (needs --model.family bert)
