"""AdamW with decay / no-decay groups (Loshchilov & Hutter 2019) and the learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from lmstack.train.config import LoopConfig


def build_optimizer(model: nn.Module, cfg: LoopConfig, device_type: str) -> torch.optim.AdamW:
    """Weight decay on matrices only: biases, norm gains and 1-d parameters are not decayed (unless
    ``cfg.decay_all``: one group, every parameter decayed, as ``torch.optim.AdamW(model.parameters())``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay_all:
        groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = cfg.fused_optimizer if cfg.fused_optimizer is not None else device_type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def lr_at(it: int, cfg: LoopConfig) -> float:
    """The learning rate of optimizer step ``it`` (0-based) under ``cfg.schedule``.

    cosine: linear warmup to ``lr`` over ``warmup_iters``, then ``min_lr + (lr - min_lr) (1 + cos(pi r)) / 2``
    with r the share of ``lr_decay_iters`` after the warmup (Loshchilov & Hutter 2017; GPT-2/nanoGPT's recipe).
    linear: ``lr * min((it + 1) / warmup_iters, (D - it) / D)``, D = ``lr_decay_iters``: up, then down to zero
    (BERT's schedule, Devlin et al. 2019). constant: ``lr`` throughout.
    """
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "linear":
        return cfg.lr * min((it + 1) / max(1, cfg.warmup_iters), (decay_iters - it) / decay_iters)
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it > decay_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)
