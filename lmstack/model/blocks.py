"""The building blocks of a Transformer: norms, positions, attention, MLPs, residual blocks, the KV cache.

Variants (LayerNorm vs RMSNorm, GELU MLP vs SwiGLU, learned positions vs RoPE, pre- vs post-norm) are separate
classes chosen by each family's builder (``lmstack.model.families``) when the model is built, so no
``forward`` branches on the model family.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.model.config import ModelConfig


class RMSNorm(nn.Module):
    """x / rms(x) * g (Zhang & Sennrich 2019), computed in fp32 like Llama."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype == torch.float32:
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)
        return F.rms_norm(x.float(), (x.size(-1),), self.weight.float(), self.eps).to(x.dtype)


def dropout_layer(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or for p = 0 an identity (cheaper to call: decoding a small model is call overhead)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def layer_norm(dim: int, eps: float, bias: bool) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=eps, bias=bias)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021), the rotate-half layout used by Llama and Hugging Face."""

    def __init__(self, head_dim: int, max_len: int, theta: float):
        super().__init__()
        # The tables are computed on the CPU and moved to the default device: on "meta" (a model built to be
        # loaded) torch.arange runs a Python reference that imports torch._dynamo, a second of start-up.
        device, cpu = torch.get_default_device(), torch.device("cpu")
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=cpu) / head_dim)
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32, device=cpu), inv_freq)
        angles = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer("cos", angles.cos().to(device), persistent=False)
        self.register_buffer("sin", angles.sin().to(device), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables for ``positions`` ([T] or [B, T]), shaped to broadcast over heads."""
        cos, sin = self.cos[positions], self.sin[positions]
        if positions.dim() == 2:  # [B, T, D] -> [B, 1, T, D]
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


class KVCache:
    """Preallocated keys and values for every layer, so decoding one token costs O(context), not O(context^2).

    ``pos`` is the number of positions already written; ``update`` appends a step's keys/values and returns
    views of everything cached so far. ``reorder`` permutes the batch (beam search).
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (batch_size, config.n_kv_head, max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.max_len = max_len
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.pos + k.size(2)
        self.k[layer][:, :, self.pos:end] = k
        self.v[layer][:, :, self.pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]

    def mask(self, T: int, key_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Which cached keys ``T`` new queries may see (None: plain causal); a cache with another layout
        (say, one slot per request in a serving engine) overrides this, ``update`` and ``advance``."""
        return attention_mask(T, self.pos, key_mask, self.k[0].device)

    def advance(self, T: int) -> None:
        self.pos += T


def attention_mask(T: int, start: int, key_mask: torch.Tensor | None, device,
                   prefix_len: torch.Tensor | None = None) -> torch.Tensor | None:
    """None when plain causal attention (or one new token) will do; else a [B|1, 1, T, start+T] bool mask.

    ``prefix_len`` [B] makes it a prefix-LM mask (Raffel et al. 2020; Dong et al. 2019): every query also sees
    the first p_b keys of its row, so attention is bidirectional over the prefix and causal after it."""
    if key_mask is None and prefix_len is None and (start == 0 or T == 1):
        return None
    S = start + T
    causal = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=start)
    if prefix_len is not None:  # [B, 1, T, S]: causal, or a key inside the row's prefix
        prefix = torch.arange(S, device=device)[None, :] < prefix_len.to(device)[:, None]  # [B, S]
        causal = causal[None] | prefix[:, None, :]
        return (causal if key_mask is None else causal & key_mask[:, None, :S].bool())[:, None]
    if key_mask is None:
        return causal[None, None]
    return causal[None, None] & key_mask[:, None, None, :S].bool()


class Attention(nn.Module):
    """Self-attention with fused q/k/v projection, grouped-query heads and an optional KV cache; causal unless
    built with ``causal=False`` (a bidirectional encoder, whose ``mask`` then only hides padding keys)."""

    def __init__(self, config: ModelConfig, rope: bool, causal: bool = True):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        qkv_out = (config.n_head + 2 * config.n_kv_head) * config.head_dim
        self.qkv = nn.Linear(config.n_embd, qkv_out, bias=config.qkv_bias)
        self.proj = nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=config.bias)
        self.rope = rope
        self.causal = causal
        self.dropout = config.dropout
        self.maps: list[torch.Tensor] | None = None  # set by ``attention_maps``: record the probabilities there

    def forward(self, x, rope_cs, cache: KVCache | None, layer: int, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        qk, v = self.qkv(x).split([(self.n_head + self.n_kv_head) * self.head_dim, self.n_kv_head * self.head_dim],
                                  dim=-1)
        qk = qk.view(B, T, self.n_head + self.n_kv_head, self.head_dim).transpose(1, 2)  # [B, H + Hkv, T, D]
        if self.rope:  # one rotation for the query and key heads together
            qk = apply_rope(qk, *rope_cs)
        q, k = qk.split([self.n_head, self.n_kv_head], dim=1)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        y = self._attend(q, k, v, mask, T)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))

    def _attend(self, q, k, v, mask: torch.Tensor | None, T: int) -> torch.Tensor:
        if q.is_cpu and torch.is_autocast_enabled("cpu"):
            # Under CPU autocast only the matmuls should drop to bf16: the CPU flash-attention kernel's bf16
            # backward is ~6x slower than its fp32 one (torch 2.13), so attention runs in fp32 here.
            with torch.autocast("cpu", enabled=False):
                return self._attend(q.float(), k.float(), v.float(), mask, T)
        if self.maps is not None:
            return self._attend_explicitly(q, k, v, mask, T)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal and mask is None and T > 1,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=self.n_kv_head != self.n_head)

    def _attend_explicitly(self, q, k, v, mask: torch.Tensor | None, T: int) -> torch.Tensor:
        """softmax(Q K^T / sqrt(d) + mask) V written out (Vaswani et al. 2017, eq. 1), the same function as the
        SDPA call, appending the probabilities [B, H, T, S] to ``self.maps``. A query that may see no key at all
        (left padding) attends to nothing, as SDPA has it: its row is zeros."""
        if self.n_kv_head != self.n_head:  # grouped-query: query head h reads kv head h // (n_head / n_kv_head)
            k, v = (t.repeat_interleave(self.n_head // self.n_kv_head, dim=1) for t in (k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        if mask is None and self.causal and T > 1:  # SDPA's is_causal: the queries are the first T positions
            mask = torch.ones(T, k.size(2), dtype=torch.bool, device=q.device).tril()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        if mask is not None:
            probs = probs.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
        self.maps.append(probs)
        return F.dropout(probs, self.dropout, self.training) @ v


_ACTIVATIONS = {
    "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"),
    "silu": nn.SiLU(),
}


class MLP(nn.Module):
    """GPT-2's position-wise feed-forward: fc -> GELU -> proj."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.intermediate_size, bias=config.bias)
        self.act = _ACTIVATIONS[config.activation]
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))


class SwiGLU(nn.Module):
    """Gated MLP, proj(act(gate(x)) * up(x)) (Shazeer 2020); gate and up share one fused matmul."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_up = nn.Linear(config.n_embd, 2 * config.intermediate_size, bias=config.bias)
        self.act = _ACTIVATIONS[config.activation]
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.proj(self.act(gate) * up)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, attn: Attention, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module, dropout: float):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp
        self.drop = dropout_layer(dropout)

    def forward(self, x, rope_cs, cache: KVCache | None, layer: int, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), rope_cs, cache, layer, mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class PostNormBlock(nn.Module):
    """Post-norm residual block, as BERT keeps it: x = norm1(x + attn(x)); x = norm2(x + mlp(x)) (Vaswani et al.
    2017); its attention is built bidirectional (``causal=False``), the mask only hiding padding keys."""

    def __init__(self, attn: Attention, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module, dropout: float):
        super().__init__()
        self.attn, self.norm1, self.mlp, self.norm2 = attn, norm1, mlp, norm2
        self.drop = dropout_layer(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, None, None, 0, mask)))
        return self.norm2(x + self.drop(self.mlp(x)))


def init_weights(module: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * n_layer)."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
            nn.init.normal_(p, mean=0.0, std=std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
