"""An encoder-decoder Transformer, T5 v1.1 shape (Raffel et al. 2020), assembled by the ``t5`` family's builder
(``lmstack.model.families.t5``) and read/written as Hugging Face's ``T5ForConditionalGeneration``.

    input ids [B, S] -> embedding -> N x EncoderBlock (bidirectional)          -> norm -> memory [B, S, d]
    decoder ids [B, T] -> embedding -> M x DecoderBlock (causal + cross-attn to memory) -> norm -> head -> [B, T, V]

What makes it T5 rather than Vaswani et al.'s original:
- no position embeddings: a learned scalar per head and *relative position bucket* is added to the attention
  scores (bidirectional buckets in the encoder, causal ones in the decoder); the table lives in the first layer
  of each stack (Hugging Face's names) and every layer of that stack reuses it;
- no 1/sqrt(d) in attention (folded into the initialisation), so SDPA runs with ``scale=1`` and the bias as
  ``attn_mask``;
- RMS norm without bias or mean (T5LayerNorm = ``blocks.RMSNorm``), pre-norm residual blocks;
- gated-GELU feed-forward (v1.1): wo(gelu_tanh(wi_0 x) * wi_1 x), Shazeer 2020;
- one embedding matrix shared by both stacks; the head is untied (v1.1) or tied, and then the decoder output is
  scaled by d_model**-0.5 (v1.0, ``config.output_scale``).
The decoder starts from ``config.decoder_start_token_id`` (the pad id). Decoding goes through
``Seq2SeqSource`` (``lmstack.model.seq2seq_source``): the encoder runs once per input, the cross-attention
keys/values are cached once, and each step runs the decoder over one token with a self-attention KV cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.blocks import KVCache, RMSNorm, SwiGLU, dropout_layer
from lmstack.model.config import ModelConfig
from lmstack.model.seq2seq_source import Seq2SeqCache, Seq2SeqSource
from lmstack.model.transformer import palm_flops_per_token


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
                             ) -> torch.Tensor:
    """T5's bucket of each relative position (key - query): exact buckets for the first half of distances,
    logarithmic ones up to ``max_distance``, the last bucket beyond; bidirectional halves the buckets between
    "key before" and "key after" (Raffel et al. 2020, sec. 2.1; mesh-tensorflow's ``_relative_position_bucket``)."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:  # causal: only keys at or before the query have buckets; later ones are masked anyway
        distance = -torch.clamp(relative, max=0)
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
    """A learned bias per (bucket, head): ``forward(T, S, start)`` -> [1, H, T, S] for queries at positions
    start..start+T-1 over keys 0..S-1."""

    def __init__(self, config: ModelConfig, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.bias = nn.Embedding(self.num_buckets, config.n_head)

    def forward(self, T: int, S: int, start: int = 0) -> torch.Tensor:
        device = self.bias.weight.device
        query = torch.arange(start, start + T, device=device)[:, None]
        key = torch.arange(S, device=device)[None, :]
        bucket = relative_position_bucket(key - query, self.bidirectional, self.num_buckets, self.max_distance)
        return self.bias(bucket).permute(2, 0, 1).unsqueeze(0)  # [T, S, H] -> [1, H, T, S]


def key_padding_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """[B, S] bool (True = real token) -> additive [B, 1, 1, S] (0 or the dtype's lowest), or None."""
    if mask is None or bool(mask.all()):
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        ~mask.bool(), torch.finfo(dtype).min)[:, None, None, :]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, dropout: float,
           training: bool) -> torch.Tensor:
    """softmax(Q K^T + bias) V, T5's unscaled attention ([B, H, T, D] x [B, H, S, D] -> [B, H, T, D])."""
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout if training else 0.0, scale=1.0)


class SelfAttention(nn.Module):
    """Multi-head self-attention with fused q/k/v (Hugging Face's q, k, v), no biases, no 1/sqrt(d)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head, self.head_dim, self.dropout = config.n_head, config.head_dim, config.dropout
        inner = config.n_head * config.head_dim
        self.qkv = nn.Linear(config.n_embd, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, cache: KVCache | None = None, layer: int = 0
                ) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3 * self.n_head, self.head_dim).transpose(1, 2).chunk(3, dim=1)  # [B,H,T,D]
        if cache is not None:
            k, v = cache.update(layer, k, v)  # [B, H, pos + T, D]
        y = attend(q, k, v, bias, self.dropout, self.training)
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class CrossAttention(nn.Module):
    """The decoder's queries over the encoder's output: q from the decoder, fused k/v from the memory (computed
    once per input when decoding: ``memory_kv``)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head, self.head_dim, self.dropout = config.n_head, config.head_dim, config.dropout
        inner = config.n_head * config.head_dim
        self.q = nn.Linear(config.n_embd, inner, bias=False)
        self.kv = nn.Linear(config.n_embd, 2 * inner, bias=False)
        self.proj = nn.Linear(inner, config.n_embd, bias=False)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, S, d] -> keys, values [B, H, S, D]."""
        B, S, _ = memory.shape
        k, v = self.kv(memory).view(B, S, 2 * self.n_head, self.head_dim).transpose(1, 2).chunk(2, dim=1)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], bias: torch.Tensor | None
                ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        y = attend(q, *kv, bias, self.dropout, self.training)
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class GatedGELU(SwiGLU):
    """T5 v1.1's feed-forward, wo(drop(gelu_tanh(wi_0 x) * wi_1 x)): ``blocks.SwiGLU`` with T5's inner dropout."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.drop = dropout_layer(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.proj(self.drop(self.act(gate) * up))


class EncoderBlock(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x)); attention bidirectional (the bias carries the padding mask)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1, self.attn = RMSNorm(config.n_embd, config.norm_eps), SelfAttention(config)
        self.norm2, self.mlp = RMSNorm(config.n_embd, config.norm_eps), GatedGELU(config)
        self.drop = dropout_layer(config.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), bias))
        return x + self.drop(self.mlp(self.norm2(x)))


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the memory, feed-forward: three pre-norm residual sublayers."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1, self.attn = RMSNorm(config.n_embd, config.norm_eps), SelfAttention(config)
        self.norm_cross, self.cross = RMSNorm(config.n_embd, config.norm_eps), CrossAttention(config)
        self.norm2, self.mlp = RMSNorm(config.n_embd, config.norm_eps), GatedGELU(config)
        self.drop = dropout_layer(config.dropout)

    def forward(self, x: torch.Tensor, self_bias: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor],
                cross_bias: torch.Tensor | None, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), self_bias, cache, layer))
        x = x + self.drop(self.cross(self.norm_cross(x), kv, cross_bias))
        return x + self.drop(self.mlp(self.norm2(x)))


def init_t5_weights(model: nn.Module, config: ModelConfig) -> None:
    """Mesh-TensorFlow's initialisation, as transformers' T5 has it: N(0, 1) embeddings (the head N(0, d^-1/2)),
    q ~ N(0, (d * d_kv)^-1/2) (the missing 1/sqrt(d) of attention), k, v ~ N(0, d^-1/2), o ~ N(0, (H d_kv)^-1/2),
    wi ~ N(0, d^-1/2), wo ~ N(0, d_ff^-1/2), norms 1."""
    d, dkv, inner, ff = config.n_embd, config.head_dim, config.n_head * config.head_dim, config.intermediate_size
    for name, p in model.named_parameters():
        if p.dim() < 2:
            nn.init.ones_(p)
        elif name.endswith(("tok_emb.weight", "bias.weight")):
            nn.init.normal_(p, std=1.0 if name.endswith("tok_emb.weight") else d ** -0.5)
        elif name == "lm_head.weight":
            nn.init.normal_(p, std=d ** -0.5)
        elif name.endswith(("attn.qkv.weight", "cross.q.weight")):
            nn.init.normal_(p, std=d ** -0.5)
            with torch.no_grad():
                p[:inner].mul_(dkv ** -0.5)  # the query rows
        elif name.endswith("cross.kv.weight") or name.endswith("mlp.gate_up.weight"):
            nn.init.normal_(p, std=d ** -0.5)
        elif name.endswith("attn.proj.weight") or name.endswith("cross.proj.weight"):
            nn.init.normal_(p, std=inner ** -0.5)
        elif name.endswith("mlp.proj.weight"):
            nn.init.normal_(p, std=ff ** -0.5)


class EncoderDecoder(nn.Module):
    """T5: ``forward(input_ids, decoder_input_ids, attention_mask)`` -> logits [B, T, V]; ``encode`` -> memory."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        self.n_decoder_layer = c.n_decoder_layer or c.n_layer
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)  # shared by both stacks (Hugging Face's "shared")
        self.drop = dropout_layer(c.dropout)
        self.enc_bias = RelativePositionBias(c, bidirectional=True)
        self.enc_blocks = nn.ModuleList(EncoderBlock(c) for _ in range(c.n_layer))
        self.enc_norm = RMSNorm(c.n_embd, c.norm_eps)
        self.dec_bias = RelativePositionBias(c, bidirectional=False)
        self.dec_blocks = nn.ModuleList(DecoderBlock(c) for _ in range(self.n_decoder_layer))
        self.dec_norm = RMSNorm(c.n_embd, c.norm_eps)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        scaled = c.tie_embeddings if c.output_scale is None else c.output_scale
        self.output_scale = c.n_embd ** -0.5 if scaled else 1.0  # T5 v1.0's tied head
        init_t5_weights(self, c)
        if c.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    # ------------------------------------------------------------------ encoder
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's output [B, S, d] for ``input_ids`` [B, S]; ``attention_mask`` [B, S] True = real token
        (padding, left or right, is hidden as keys; relative positions make left padding harmless)."""
        S = input_ids.size(1)
        self._check_length(S, "encoder input")
        x = self.drop(self.tok_emb(input_ids))
        bias = self.enc_bias(S, S)  # [1, H, S, S]
        padding = key_padding_bias(attention_mask, bias.dtype)
        bias = bias if padding is None else bias + padding  # [B, H, S, S]
        for block in self.enc_blocks:
            x = block(x, bias)
        return self.drop(self.enc_norm(x))

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every decoder layer's cross-attention keys and values [B, H, S, D] for the encoder output ``memory``."""
        return [block.cross.memory_kv(memory) for block in self.dec_blocks]

    # ------------------------------------------------------------------ decoder
    def decode(self, decoder_input_ids: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]],
               attention_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """Logits [B, T, V] for ``decoder_input_ids`` [B, T] (continuing ``cache``, which advances by T) given the
        cross-attention keys/values ``kv`` and the encoder's ``attention_mask`` [B, S]."""
        T = decoder_input_ids.size(1)
        start = cache.pos if cache is not None else 0
        self._check_length(start + T, "decoder sequence")
        x = self.drop(self.tok_emb(decoder_input_ids))
        self_bias = self.dec_bias(T, start + T, start)  # [1, H, T, start + T]
        if T > 1:  # hide later keys: query i (at start + i) sees keys 0..start + i
            causal = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            self_bias = self_bias.masked_fill(~causal, torch.finfo(self_bias.dtype).min)
        cross_bias = key_padding_bias(attention_mask, self_bias.dtype)
        for i, block in enumerate(self.dec_blocks):
            x = block(x, self_bias, kv[i], cross_bias, cache, i)
        if cache is not None:
            cache.advance(T)
        x = self.drop(self.dec_norm(x))
        return self.lm_head(x * self.output_scale if self.output_scale != 1.0 else x)

    def forward(self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, V] of the decoder over ``decoder_input_ids`` [B, T] (teacher forcing: the targets shifted
        right behind ``config.decoder_start_token_id``) given the encoder input ``input_ids`` [B, S]."""
        memory = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, self.memory_kv(memory), attention_mask)

    def continuation_logits(self, contexts: list[list[int]], continuations: list[list[int]]) -> list[torch.Tensor]:
        """Per row, the logits [len(c), V] that predict each continuation token given the context as the encoder
        input (teacher forcing: the decoder reads the start token, then c[:-1]); what ``model.scoring`` and the
        evaluation harness read for log p(continuation | context). Both sides are right-padded in one batch."""
        device = self.tok_emb.weight.device

        def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
            for r, ids in enumerate(rows):
                idx[r, :len(ids)] = torch.tensor(ids)
            lengths = torch.tensor([len(r) for r in rows])
            return idx.to(device), (torch.arange(idx.size(1)) < lengths[:, None]).to(device)

        x, mask = padded(contexts)
        y, _ = padded([[self.config.decoder_start_token_id] + c[:-1] for c in continuations])
        logits = self(x, y, mask)  # [B, T, V]; the decoder is causal, so its right padding changes nothing
        return [logits[r, :len(c)] for r, c in enumerate(continuations)]

    def _check_length(self, n: int, what: str) -> None:
        if n > self.config.block_size:
            raise LmstackError(f"{what} of {n} tokens exceeds model.block_size={self.config.block_size}")

    # ------------------------------------------------------------------ decoding, size
    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None
                  ) -> Seq2SeqCache:
        p = self.tok_emb.weight
        return Seq2SeqCache(self.config.replace(n_layer=self.n_decoder_layer), batch_size,
                            max_len or self.config.block_size, p.device, dtype or p.dtype)

    def source(self, compile: bool = False) -> Seq2SeqSource:
        """The logit source ``generate.decode`` / ``beam_search`` read (``model.source.to_source``)."""
        return Seq2SeqSource(self)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (a tied head counts once; T5 has no position embeddings to leave out)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per (target) token, Kaplan et al.'s 6N + attention: 12·d_attn·T per self-attention layer
        of both stacks plus the cross-attention layers (encoder and decoder lengths both ``seq_len``)."""
        c = self.config
        T = seq_len or c.block_size
        attn_layers = c.n_layer + 2 * self.n_decoder_layer
        return palm_flops_per_token(self.num_params(), attn_layers, c.n_head, c.head_dim, T)


def materialise(model: EncoderDecoder) -> EncoderDecoder:
    """After loading on "meta": re-tie the head to the shared embedding."""
    if model.config.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    return model
