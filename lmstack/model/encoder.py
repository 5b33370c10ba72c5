"""A bidirectional Transformer encoder (BERT, Devlin et al. 2019), assembled from the decoder's blocks by the
``bert`` family's builder (``lmstack.model.families.bert``).

    tokens + learned positions + token types -> LayerNorm -> N x PostNormBlock -> hidden states [B, T, H]

Unlike the decoder, attention is not causal (a padding mask only hides padded keys), each block normalises
after its residual sum (post-norm, as in BERT), and there is no output layer: task heads are in ``heads.py``.
The configuration is a ``ModelConfig`` of family ``bert`` (presets ``bert-tiny``, ``bert-mini``).
"""

from __future__ import annotations

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.blocks import PostNormBlock, init_weights, layer_norm
from lmstack.model.config import ModelConfig


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig, blocks: list[PostNormBlock]):
        super().__init__()
        c = self.config = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        self.pos_emb = nn.Embedding(c.block_size, c.n_embd)
        self.type_emb = nn.Embedding(c.type_vocab_size, c.n_embd)
        self.norm_emb = layer_norm(c.n_embd, c.norm_eps, bias=True)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(blocks)
        init_weights(self, c.n_layer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, T, n_embd]; ``attention_mask`` [B, T] is 1/True for real tokens, 0 for padding."""
        T = input_ids.size(1)
        if T > self.config.block_size:
            raise LmstackError(f"sequence of {T} tokens exceeds the encoder's {self.config.block_size} positions")
        x = self.tok_emb(input_ids) + self.pos_emb(torch.arange(T, device=input_ids.device))
        x = x + (self.type_emb.weight[0] if token_type_ids is None else self.type_emb(token_type_ids))
        x = self.drop(self.norm_emb(x))
        # Keys to hide: [B, 1, 1, T] broadcast over heads and queries; None lets SDPA take its fastest kernel.
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()[:, None, None]
        for block in self.blocks:
            x = block(x, mask)
        return x

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
