"""A decoder-only Transformer language model (Vaswani et al. 2017; Radford et al. 2019), assembled from the
blocks in ``blocks.py`` by a family's builder (``lmstack.model.families.gpt2`` / ``llama``; see ``build_model``).

    tokens -> embedding (+ learned positions) -> N x Block -> final norm -> lm_head -> next-token logits
"""

from __future__ import annotations

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.blocks import Block, KVCache, RotaryEmbedding, attention_mask, dropout_layer, init_weights
from lmstack.model.config import ModelConfig


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig, blocks: list[Block], norm_f: nn.Module,
                 pos_emb: nn.Embedding | None, rope: RotaryEmbedding | None):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = pos_emb
        self.rope = rope
        self.drop = dropout_layer(config.dropout)
        self.blocks = nn.ModuleList(blocks)
        self.norm_f = norm_f
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_weights(self, config.n_layer)
        if config.tie_embeddings:  # one matrix reads and writes tokens (Press & Wolf 2017)
            self.lm_head.weight = self.tok_emb.weight

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None, last_only: bool = False,
                prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for every position of ``idx`` [B, T] (only the last with ``last_only``).

        With ``cache``, ``idx`` continues the cached sequence and the cache advances by T. ``positions``
        ([B, T]) and ``key_mask`` ([B, S], True = real token) support left-padded batches. ``prefix_len`` [B]:
        attention is bidirectional over each row's first p positions (a prefix LM), causal after.
        """
        x = self.hidden_states(self.tok_emb(idx), cache, positions, key_mask, prefix_len)
        return self.lm_head(x[:, -1:] if last_only else x)

    def hidden_states(self, x: torch.Tensor, cache: KVCache | None = None, positions: torch.Tensor | None = None,
                      key_mask: torch.Tensor | None = None, prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        """The final (normed) hidden states for input embeddings ``x`` [B, T, n_embd].

        Taking embeddings rather than ids lets prompt tuning prepend trained vectors, and the hidden states
        serve as text embeddings (mean-pooled) as well as feeding ``lm_head``.
        """
        T = x.size(1)
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise LmstackError(f"sequence of {start + T} tokens exceeds the context of {self.config.block_size}")
        if positions is None:
            positions = torch.arange(start, start + T, device=x.device)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        x = self.drop(x)
        rope_cs = self.rope(positions) if self.rope is not None else None
        if prefix_len is not None:  # a prefix-LM mask [B, 1, T, start + T]
            mask = attention_mask(T, start, key_mask, x.device, prefix_len)
        else:
            mask = cache.mask(T, key_mask) if cache is not None else attention_mask(T, 0, key_mask, x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, rope_cs, cache, i, mask)
        if cache is not None:
            cache.advance(T)
        return self.norm_f(x)

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        p = self.tok_emb.weight
        return KVCache(self.config, batch_size, max_len or self.config.block_size, p.device, dtype or p.dtype)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (and, tied, token embeddings count once)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.pos_emb is not None:
            n -= self.pos_emb.weight.numel()
        return n

    def matmul_params(self) -> int:
        """The parameters that multiply activations: ``num_params()`` without lookups (positions, and the token
        table unless it is tied to the LM head, whose matmul it then is)."""
        n = self.num_params()
        return n if self.config.tie_embeddings else n - self.tok_emb.weight.numel()

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token, ``palm_flops_per_token`` of ``matmul_params()`` over ``seq_len`` positions."""
        c = self.config
        return palm_flops_per_token(self.matmul_params(), c.n_layer, c.n_head, c.head_dim, seq_len or c.block_size)


def palm_flops_per_token(n_params: int, n_layer: int, n_head: int, head_dim: int, seq_len: int) -> int:
    """Training FLOPs per token, PaLM appendix B (Chowdhery et al. 2022): 6N + 12·L·H·Q·T, N the parameters that
    multiply activations, L layers of H heads of width Q attending over T positions."""
    return 6 * n_params + 12 * n_layer * n_head * head_dim * seq_len


def materialise(model: Transformer) -> Transformer:
    """After loading onto a model built on the "meta" device: re-tie the head and rebuild the non-persistent
    buffers (RoPE tables). A body under a score head has no LM head (``lm_head`` is None) to tie."""
    if model.config.tie_embeddings and model.lm_head is not None:
        model.lm_head.weight = model.tok_emb.weight
    if model.rope is not None:
        model.rope = type(model.rope)(model.config.head_dim, model.config.block_size, model.config.rope_theta)
    return model
