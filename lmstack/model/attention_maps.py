"""Attention weights on request, for analysis: ``with attention_maps(model) as maps: model(x)``.

Inside the block every ``Attention`` of ``model`` computes softmax(Q K^T / sqrt(d) + mask) explicitly and
appends it, [B, H, T, S] (H query heads, S keys seen: cached ones included), to ``maps``: one tensor per
layer per forward call, in call order (so ``maps[i]`` is layer i of a single forward). Outside the block the
model runs its ``F.scaled_dot_product_attention`` path with no extra work. Causal masks, grouped-query heads,
RoPE, padding masks and the KV cache are all honoured, so the outputs are those of the fast path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from lmstack.model.blocks import Attention


@contextmanager
def attention_maps(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record every attention layer's probabilities while the block runs (see the module docstring)."""
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    maps: list[torch.Tensor] = []
    for layer in layers:
        layer.maps = maps
    try:
        yield maps
    finally:
        for layer in layers:
            layer.maps = None
