"""Virtual tokens: P trained positions placed before every sequence, shared by prefix and prompt tuning.

The model stays untouched; the virtual positions live in the KV cache. Before the real tokens are read,
``fill`` writes P positions into the cache (prefix tuning writes trained keys and values directly; prompt
tuning runs trained embeddings through the model), and the real tokens then attend to them as to an earlier
part of the sequence, at positions P, P+1, .... Generation works unchanged: ``new_cache`` returns a cache
already holding the virtual positions.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from lmstack.model.blocks import KVCache, attention_mask
from lmstack.model.config import ModelConfig


class GrowingCache(KVCache):
    """Keys and values concatenated as they come instead of written into a preallocated buffer, so gradients
    flow through them: the cache a training step builds its virtual positions in."""

    def __init__(self, n_layer: int, device: torch.device):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.pos, self.device = 0, device

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is not None:
            k, v = torch.cat([self.k[layer], k], dim=2), torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v

    def mask(self, T: int, key_mask: torch.Tensor | None) -> torch.Tensor | None:
        return attention_mask(T, self.pos, key_mask, self.device)


class VirtualTokens(nn.Module):
    """``base`` with ``n_virtual`` positions before every sequence; subclasses say how ``fill`` makes them."""

    def __init__(self, base: nn.Module, n_virtual: int):
        super().__init__()
        self.base, self.n_virtual = base, n_virtual

    @property
    def config(self) -> ModelConfig:
        """The base config, with the context shortened by the virtual positions it spends."""
        return dataclasses.replace(self.base.config, block_size=self.base.config.block_size - self.n_virtual)

    @property
    def tok_emb(self) -> nn.Embedding:
        return self.base.tok_emb

    def fill(self, cache: KVCache, batch_size: int) -> None:
        """Write the ``n_virtual`` positions into ``cache`` and advance it past them."""
        raise NotImplementedError

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        cache = self.base.new_cache(batch_size, (max_len or self.config.block_size) + self.n_virtual, dtype)
        with torch.no_grad():
            self.fill(cache, batch_size)
        return cache

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """As ``Transformer.forward``; ``positions`` and ``key_mask`` count real tokens only."""
        B = idx.size(0)
        if cache is None:
            cache = GrowingCache(len(self.base.blocks), idx.device)
            self.fill(cache, B)
        if positions is not None:
            positions = positions + self.n_virtual
        if key_mask is not None:
            key_mask = torch.cat([key_mask.new_ones(B, self.n_virtual).bool(), key_mask.bool()], dim=1)
        return self.base(idx, cache, positions, key_mask, last_only)
