"""Every layer's and head's attention probabilities for one text, through ``model.attention_maps``.

The text is tokenised as is (special-token strings such as ``<|eos|>`` inside it are recognised, so a document
start can be written as the demo's training data has it) and run once through the model (a decoder, or an
encoder without [CLS]/[SEP] framing); ``maps[l, h, i, j]`` is how much query token i of head h in layer l attends
to key token j (rows sum to 1; causal maps are lower-triangular).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.interpret.token_pieces import TokenPieces, token_pieces
from lmstack.model.attention_maps import attention_maps
from lmstack.text.tokenizer import Tokenizer


@dataclass(frozen=True)
class AttentionRun:
    tokens: TokenPieces
    maps: np.ndarray  # [L, H, T, T] float32
    truncated: int = 0  # tokens dropped from the end (with truncate=True)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(layers, heads, tokens)."""
        L, H, T, _ = self.maps.shape
        return L, H, T


def encode_for(model: nn.Module, tokenizer: Tokenizer, text: str, truncate: bool = False,
               source: str = "the text") -> tuple[list[int], int]:
    """The ids of ``text`` for ``model`` and how many were cut: a text longer than the model's context is refused
    (naming both lengths) unless ``truncate`` keeps its first ``block_size`` tokens."""
    ids = tokenizer.encode(text)
    limit = model.config.block_size
    if not ids:
        raise LmstackError(f"{source}: empty text (no tokens to look at)")
    if len(ids) > limit and not truncate:
        raise LmstackError(f"{source}: {len(ids)} tokens exceed the model's context of {limit} tokens "
                           f"(shorten the text or pass --truncate to keep the first {limit})")
    return ids[:limit], max(0, len(ids) - limit)


@torch.no_grad()
def collect_attention(model: nn.Module, tokenizer: Tokenizer, text: str, truncate: bool = False,
                      source: str = "the text") -> AttentionRun:
    """Run ``text`` through ``model`` once and return its attention maps [L, H, T, T] with the tokens."""
    ids, cut = encode_for(model, tokenizer, text, truncate, source)
    return attention_for_ids(model, tokenizer, ids, cut)


@torch.no_grad()
def attention_for_ids(model: nn.Module, tokenizer: Tokenizer, ids: list[int], truncated: int = 0) -> AttentionRun:
    """``collect_attention`` for token ids (at most the model's context of them)."""
    device = next(model.parameters()).device
    model.eval()
    with attention_maps(model) as maps:
        model(torch.tensor([ids], device=device))
    return AttentionRun(token_pieces(tokenizer, ids), maps_array(maps), truncated)


def maps_array(maps: list[torch.Tensor]) -> np.ndarray:
    """One forward call's recorded maps (a list of [1, H, T, T], one per layer) as a [L, H, T, T] float32 array."""
    return torch.cat(maps, dim=0).float().cpu().numpy()
