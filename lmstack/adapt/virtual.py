"""Virtual tokens: P trained positions placed before every sequence, shared by prefix and prompt tuning.

The model stays untouched; the virtual positions live in the KV cache. Before the real tokens are read,
``fill`` writes P positions into the cache (prefix tuning writes trained keys and values directly; prompt
tuning runs trained embeddings through the model), and the real tokens then attend to them as to an earlier
part of the sequence, at positions P, P+1, .... Decoders read a ``VirtualSource`` (``model.source()``): its
caches have room for the virtual positions, and its ``prefill`` writes them before the prompt, so greedy,
beam and the serving engine (one cache slot per request) need not know that virtual tokens exist.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from lmstack.model.blocks import KVCache, attention_mask
from lmstack.model.config import ModelConfig
from lmstack.model.source import ModelSource


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

    def hidden_states(self, x: torch.Tensor, cache: KVCache | None = None, positions: torch.Tensor | None = None,
                      key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The base model's hidden states (text embeddings are the base model's, without virtual tokens)."""
        return self.base.hidden_states(x, cache, positions, key_mask)

    def source(self, compile: bool = False) -> VirtualSource:
        """The logit source decoders read: the virtual positions are filled before every prompt."""
        return VirtualSource(self, compile)

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


class VirtualSource(ModelSource):
    """A ``VirtualTokens`` model as a logit source: each cache row gets ``n_virtual`` more positions, filled
    by ``prefill`` before the prompt is read (positions and key masks given to it count real tokens only)."""

    def __init__(self, model: VirtualTokens, compile: bool = False):
        super().__init__(model, compile)

    def new_cache(self, batch_size: int, max_len: int | None = None, cache_cls: type[KVCache] = KVCache) -> KVCache:
        w, model = self.model.tok_emb.weight, self.model
        return cache_cls(model.base.config, batch_size, (max_len or self.context) + model.n_virtual, w.device, w.dtype)

    def prefill(self, idx: torch.Tensor, cache: KVCache, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.model.fill(cache, idx.size(0))
        return super().prefill(idx, cache, positions, key_mask)
