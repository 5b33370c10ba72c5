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
class FSDPConfig:
    """FSDP2's options (``parallel: fsdp``): the dtype blocks compute in and gradients are reduced in, activation
    checkpointing of every block, parameters and optimizer state kept on the CPU."""
    param_dtype: Literal["fp32", "bf16"] = "fp32"  # bf16: forward / backward on bf16 copies of the fp32 shards
    reduce_dtype: Literal["fp32", "bf16"] = "fp32"  # the dtype of the gradient reduce-scatter
    activation_checkpointing: bool = False  # recompute each block's activations in backward (memory for compute)
    cpu_offload: bool = False  # shards, gradients and the optimizer step on the CPU


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
    spike_guard: Literal["off", "skip", "rollback"] = "off"  # loss-spike guard (train.spike_guard): skip the update /
    # restore the last checkpoint, when loss or grad norm > mean + spike_sigma * std of the last spike_window steps
    spike_sigma: float = 6.0
    spike_window: int = 128
    spike_min_history: int = 64  # steps of history before the guard acts
    rollback_skip: int = 0  # rollback: steps' worth of batches drawn and discarded after restoring
    seed: int = 1337
    device: str = "auto"  # auto: cuda if available, else cpu
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast where the hardware has bf16 matmuls
    compile: bool = False  # torch.compile the model (first steps are slow while it compiles)
    fused_optimizer: bool | None = None  # None: fused AdamW (one kernel per step) on CUDA and CPU
    max_seconds: float | None = None  # time budget: stop (with a final evaluation and checkpoint) once spent
    parallel: Literal["none", "ddp", "fsdp"] = "none"  # under torchrun: DDP or FSDP2 (train.distributed)
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    dist_timeout: float = 600.0  # seconds to wait for the rendezvous and for any collective

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
        if isinstance(self.dist_timeout, bool) or not isinstance(self.dist_timeout, (int, float)) \
                or not 0 < self.dist_timeout < math.inf:
            raise LmstackError(f"dist_timeout must be a positive number of seconds, got {self.dist_timeout!r}")
        if not (isinstance(self.spike_sigma, (int, float)) and not isinstance(self.spike_sigma, bool)
                and 0 < self.spike_sigma < math.inf):
            raise LmstackError(f"spike_sigma must be a positive number, got {self.spike_sigma!r}")
        if self.spike_window < 2 or not 1 <= self.spike_min_history <= self.spike_window or self.rollback_skip < 0:
            raise LmstackError(f"need spike_window >= 2, 1 <= spike_min_history <= spike_window and rollback_skip "
                               f">= 0, got {self.spike_window}, {self.spike_min_history}, {self.rollback_skip}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise LmstackError(f"max_seconds must be positive, got {self.max_seconds}")
        check_seed(self.seed, "seed")


@dataclass
class TrainConfig(LoopConfig):
    data: Path = Path("data")  # a folder written by `lmstack prepare`
    out: Path = Path("runs/train")
    model: ModelConfig = field(default_factory=ModelConfig)  # vocab_size is taken from the data's tokenizer
    # mlm: a BERT-style encoder (--model.family bert); prefix_lm: --model.family prefix_lm; span_corruption,
    # infilling, ul2: an encoder-decoder (--model.family t5, data prepared with --sentinels 100)
    objective: Literal["causal", "mlm", "prefix_lm", "span_corruption", "infilling", "ul2"] = "causal"
    z_loss: float = 0.0  # causal / mlm: + z_loss * mean (log Z)^2 of the softmax (PaLM used 1e-4)
    # ul2: the mixture's weights of its denoisers R (span 3, 15%), X (span 32, 50%), X (span 3, 50%), S (prefix
    # LM), in that order; None: UL2's 2, 1, 1, 1
    ul2_weights: list[float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ul2_weights is not None:
            if self.objective != "ul2":
                raise LmstackError(f"ul2_weights weigh UL2's denoisers: they need --objective ul2, not "
                                   f"{self.objective}")
            if len(self.ul2_weights) != 4 or any(not isinstance(w, (int, float)) or not 0 <= w < math.inf
                                                 for w in self.ul2_weights) or not sum(self.ul2_weights) > 0:
                raise LmstackError(f"ul2_weights: {self.ul2_weights} should be 4 numbers >= 0 (R, X, X, S), not all 0")
        if isinstance(self.z_loss, bool) or not isinstance(self.z_loss, (int, float)) \
                or not 0 <= self.z_loss < math.inf:
            raise LmstackError(f"z_loss must be a number >= 0, got {self.z_loss!r}")
