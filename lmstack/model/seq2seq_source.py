"""An encoder-decoder (``lmstack.model.seq2seq.EncoderDecoder``) as a ``LogitSource``, so greedy, sampling, beam
search and streaming decode it through the same API as a causal LM.

    cache = source.new_cache(B, max_len)        # the decoder's self-attention KV cache + room for the memory
    logits = source.prefill(input_ids, cache,   # encode the (left-padded) inputs once, cache every decoder
                            key_mask=mask)      # layer's cross-attention K/V, read decoder_start_token_id
    logits = source.step(tokens, cache)         # one decoder token per row
    source.reorder(cache, index)                # beams / K samples: both caches and the input mask follow

The prompt a decoder hands over is the encoder input; the decoder itself has no padding (every row starts
from the start token at once), so ``positions`` (and ``key_mask`` after the prefill) are not needed by it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lmstack.errors import LmstackError
from lmstack.model.blocks import KVCache
from lmstack.model.config import ModelConfig

if TYPE_CHECKING:  # the model module imports this one
    from lmstack.model.seq2seq import EncoderDecoder


class Seq2SeqCache(KVCache):
    """The decoder's self-attention cache (one ``KVCache`` layer per decoder layer) plus, per decoder layer, the
    cross-attention keys/values of the encoder output [B, H, S, D] and the encoder's key mask [B, S] (or None)."""

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        super().__init__(config, batch_size, max_len, device, dtype)
        self.memory_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.memory_mask: torch.Tensor | None = None

    def reorder(self, index: torch.Tensor) -> None:
        super().reorder(index)
        self.memory_kv = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.memory_kv]
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, index)


class Seq2SeqSource:
    """Next-token logits of the decoder of an ``EncoderDecoder``, its encoder run once per input."""

    def __init__(self, model: EncoderDecoder):
        self.model = model
        self.vocab_size, self.context = model.config.vocab_size, model.config.block_size
        self.device = model.tok_emb.weight.device

    def new_cache(self, batch_size: int, max_len: int | None = None, cache_cls: type[KVCache] = KVCache
                  ) -> Seq2SeqCache:
        """A cache for ``batch_size`` rows of up to ``max_len`` decoder tokens (+1: the start token). Only its own
        cache kind serves: another ``cache_cls`` (a serving engine's slot cache) is refused."""
        if cache_cls is not KVCache and not issubclass(Seq2SeqCache, cache_cls):
            raise LmstackError(f"an encoder-decoder ({self.model.config.family}) decodes with its own cache, not a "
                               f"{cache_cls.__name__} (a serving engine's slots); decode it with lmstack generate")
        return self.model.new_cache(batch_size, (max_len or self.context) + 1)

    def prefill(self, idx: torch.Tensor, cache: Seq2SeqCache, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode inputs ``idx`` [B, S] (``key_mask`` [B, >= S]: True at real tokens), cache the memory's K/V, read
        the decoder start token; the first decoder logits [B, V]."""
        mask = None if key_mask is None else key_mask[:, :idx.size(1)].bool()
        cache.memory_mask = mask
        cache.memory_kv = self.model.memory_kv(self.model.encode(idx, mask))
        start = torch.full((idx.size(0), 1), self.model.config.decoder_start_token_id, dtype=torch.long,
                           device=idx.device)
        return self.model.decode(start, cache.memory_kv, mask, cache)[:, -1]

    def step(self, tokens: torch.Tensor, cache: Seq2SeqCache, positions: torch.Tensor | None = None,
             key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One decoder token per row (``tokens`` [B]); the next logits [B, V]."""
        return self.model.decode(tokens[:, None], cache.memory_kv, cache.memory_mask, cache)[:, -1]

    def reorder(self, cache: Seq2SeqCache, index: torch.Tensor) -> None:
        cache.reorder(index)

    def output_prefix(self, prompt: list[int]) -> list[int]:
        """What the output continues, as repetition penalties count it: the decoder start token (transformers'
        decoder input_ids), not the encoder input."""
        return [self.model.config.decoder_start_token_id]
