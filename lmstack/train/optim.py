"""AdamW with decay / no-decay groups (Loshchilov & Hutter 2019) and linear warmup + cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from lmstack.train.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig, device_type: str) -> torch.optim.AdamW:
    """Weight decay on matrices only: biases, norm gains and 1-d parameters are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = cfg.fused_optimizer if cfg.fused_optimizer is not None else device_type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def lr_at(it: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_iters``, then cosine decay to ``min_lr`` at ``lr_decay_iters``."""
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it > decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)
