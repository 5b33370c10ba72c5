"""``ModelConfig``: every hyperparameter of a Transformer, plus named presets.

``family`` names a registered model family (``lmstack.model.families``), each built from the shared blocks:
- ``gpt2``: learned positions, LayerNorm, GELU MLP, biases, tied embeddings (Radford et al. 2019).
- ``llama``: rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention (Touvron et al. 2023); also
  Mistral and Qwen2 checkpoints.
- ``bert``: a bidirectional encoder, post-norm, learned positions + token types (Devlin et al. 2019)
  (``block_size`` is BERT's max_position_embeddings).
- ``t5``: the T5 v1.1 encoder-decoder (Raffel et al. 2020): relative position buckets, RMS norm, gated-GELU
  (``n_layer`` encoder and ``n_decoder_layer`` decoder layers; ``block_size`` bounds each side's length).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from lmstack.errors import LmstackError
from lmstack.model.registry import get_family


@dataclass
class ModelConfig:
    family: str = "gpt2"  # a registered family: gpt2, llama, bert, ...
    vocab_size: int = 4096
    block_size: int = 256  # the context length: learned positions / RoPE table size
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None  # None: = n_head (multi-head); fewer: grouped-query attention
    n_embd: int = 128
    head_dim: int | None = None  # None: n_embd // n_head
    intermediate_size: int | None = None  # None: the family's rule (4*n_embd; Llama: 2/3 * 4d rounded to 64)
    bias: bool = True  # biases in linears (and LayerNorm): GPT-2 has them, Llama does not
    qkv_bias: bool | None = None  # None: = bias. Qwen2 has q/k/v biases only.
    activation: Literal["gelu", "gelu_tanh", "silu"] = "gelu_tanh"  # GPT-2 uses the tanh approximation
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    dropout: float = 0.0
    type_vocab_size: int = 2  # bert: token-type (segment A/B) embeddings
    # --- encoder-decoder (family t5, lmstack.model.seq2seq): n_layer is the encoder's depth ---
    n_decoder_layer: int | None = None  # None: = n_layer
    relative_attention_num_buckets: int = 32  # T5 relative position buckets (half per direction in the encoder)
    relative_attention_max_distance: int = 128  # distances beyond share the last bucket
    decoder_start_token_id: int = 0  # the decoder's first input (T5: the pad id)
    output_scale: bool | None = None  # decoder output * n_embd**-0.5 before the head; None: = tie_embeddings (v1.0)
    # --- mixture of experts (families mixtral, qwen2_moe; lmstack.model.moe): 0 experts = a dense MLP ---
    n_experts: int = 0  # routed SwiGLU experts per layer
    n_experts_per_tok: int = 2  # top-k: 1 = Switch, 2 = GLaM / Mixtral
    moe_intermediate_size: int | None = None  # each expert's width; None: = intermediate_size
    n_shared_experts: int = 0  # Qwen2-MoE: 1 = a shared expert behind a sigmoid gate, on every token
    shared_expert_intermediate_size: int | None = None  # None: n_shared_experts * moe_intermediate_size
    norm_topk_prob: bool = True  # renormalise the top-k weights to sum 1 (Mixtral: True; Qwen2-MoE: False)
    router_aux_coef: float = 0.01  # load-balancing loss weight (Switch: 0.01); 0 = off
    router_z_coef: float = 0.001  # router z-loss weight (ST-MoE: 0.001); 0 = off
    capacity_factor: float | None = None  # None: dropless; c: an expert takes <= ceil(c N k / E) choices in training

    def __post_init__(self) -> None:
        family = get_family(self.family)
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.qkv_bias is None:
            self.qkv_bias = self.bias
        if self.head_dim is None:
            if self.n_embd % self.n_head:
                raise LmstackError(f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}")
            self.head_dim = self.n_embd // self.n_head
        if self.n_head % self.n_kv_head:
            raise LmstackError(f"model.n_head={self.n_head} is not divisible by model.n_kv_head={self.n_kv_head}")
        if self.intermediate_size is None:
            self.intermediate_size = family.intermediate_size(self.n_embd)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise LmstackError(f"model.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise LmstackError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.n_experts:
            self._check_experts()

    def _check_experts(self) -> None:
        """The mixture-of-experts fields, each refused in one line."""
        if self.n_experts < 0:
            raise LmstackError(f"model.n_experts must be >= 0 (0: a dense MLP), got {self.n_experts}")
        if not 1 <= self.n_experts_per_tok <= self.n_experts:
            raise LmstackError(f"model.n_experts_per_tok={self.n_experts_per_tok} must be between 1 and "
                               f"model.n_experts={self.n_experts}")
        if self.capacity_factor is not None and not self.capacity_factor > 0:
            raise LmstackError(f"model.capacity_factor must be > 0 (or null: dropless), got {self.capacity_factor}")
        if self.router_aux_coef < 0 or self.router_z_coef < 0:
            raise LmstackError("model.router_aux_coef and model.router_z_coef must be >= 0")
        if self.moe_intermediate_size is None:
            self.moe_intermediate_size = self.intermediate_size
        if self.shared_expert_intermediate_size is None:
            self.shared_expert_intermediate_size = self.n_shared_experts * self.moe_intermediate_size

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


_LLAMA = dict(family="llama", bias=False, activation="silu", norm_eps=1e-6)
_BERT = dict(family="bert", activation="gelu", norm_eps=1e-12, tie_embeddings=True)
_MOE = dict(_LLAMA, family="mixtral", n_experts=8, n_experts_per_tok=2)  # the Llama body, 8 experts, top-2
_T5 = dict(family="t5", bias=False, activation="gelu_tanh", norm_eps=1e-6, tie_embeddings=False)

PRESETS: dict[str, dict] = {
    # The nanoGPT shakespeare_char CPU recipe's shape.
    "tiny": dict(family="gpt2", n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False, activation="gelu"),
    "gpt2-tiny": dict(family="gpt2", n_layer=4, n_head=4, n_embd=128, block_size=256),
    "gpt2-small": dict(family="gpt2", n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
    "gpt2-medium": dict(family="gpt2", n_layer=24, n_head=16, n_embd=1024, block_size=1024, vocab_size=50257),
    "llama-tiny": dict(**_LLAMA, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, block_size=256),
    "llama-small": dict(**_LLAMA, n_layer=8, n_head=8, n_kv_head=4, n_embd=512, block_size=1024),
    "llama-moe-tiny": dict(**_MOE, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, block_size=256,
                           moe_intermediate_size=128),
    # Encoders: BERT's exact GELU and LayerNorm eps; bert-mini has all-MiniLM-L6-v2's shape.
    "bert-tiny": dict(**_BERT, n_layer=2, n_head=2, n_embd=128, block_size=128),
    "bert-mini": dict(**_BERT, n_layer=6, n_head=12, n_embd=384, intermediate_size=1536, block_size=512,
                      vocab_size=30522),
    # Encoder-decoders (T5 v1.1): gated-GELU, RMS norm, relative positions, untied head; t5-small has
    # google/t5-v1_1-small's shape (d_model 512, d_ff 1024, 8 + 8 layers, 6 heads of 64).
    "t5-tiny": dict(**_T5, n_layer=2, n_head=4, n_embd=128, head_dim=32, intermediate_size=256, block_size=256),
    "t5-small": dict(**_T5, n_layer=8, n_head=6, n_embd=512, head_dim=64, intermediate_size=1024, block_size=512,
                     vocab_size=32128),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A named configuration, with any field overridden."""
    if name not in PRESETS:
        raise LmstackError(f"unknown model preset '{name}'; choose one of {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
