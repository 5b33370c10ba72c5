"""Llama (Touvron et al. 2023): rotary positions, RMSNorm, SwiGLU MLP, grouped-query attention, no biases.

The same model reads and writes Hugging Face's ``LlamaForCausalLM``, ``MistralForCausalLM`` (without a sliding
window) and ``Qwen2ForCausalLM`` (biases on q/k/v only). Our fused q/k/v and gate/up projections are Hugging
Face's separate q_proj/k_proj/v_proj and gate_proj/up_proj concatenated.
"""

from __future__ import annotations

from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.blocks import Attention, Block, RMSNorm, RotaryEmbedding, SwiGLU
from lmstack.model.config import ModelConfig
from lmstack.model.families.hf_common import (ACT_TO_HF, activation, decoder_config, lm_head_rule,
                                              without_buffers)
from lmstack.model.registry import Family, LinearSlice, Rule, block_linears, register
from lmstack.model.transformer import Transformer, materialise


def build(c: ModelConfig) -> Transformer:
    def block() -> Block:
        return Block(Attention(c, rope=True), SwiGLU(c), RMSNorm(c.n_embd, c.norm_eps), RMSNorm(c.n_embd, c.norm_eps),
                     c.dropout)
    return Transformer(c, [block() for _ in range(c.n_layer)], RMSNorm(c.n_embd, c.norm_eps),
                       pos_emb=None, rope=RotaryEmbedding(c.head_dim, c.block_size, c.rope_theta))


def intermediate_size(n_embd: int) -> int:
    """SwiGLU keeps the parameter count of a 4d MLP: 2/3 * 4d, rounded up to a multiple of 64."""
    return -(-int(8 * n_embd / 3) // 64) * 64


def to_hf_config(model: nn.Module) -> dict:
    c = model.config
    qwen2 = c.qkv_bias and not c.bias
    if c.qkv_bias != c.bias and not qwen2:
        raise LmstackError("a llama-family model with biases only outside q/k/v has no Hugging Face architecture")
    arch = ("Qwen2ForCausalLM", "qwen2") if qwen2 else ("LlamaForCausalLM", "llama")
    return {"architectures": [arch[0]], "model_type": arch[1], **body_hf_config(c),
            "intermediate_size": c.intermediate_size, "attention_bias": c.bias, "mlp_bias": c.bias}


def body_hf_config(c: ModelConfig) -> dict:
    """The config.json fields every Llama-bodied family writes alike (Llama, Qwen2, Mixtral, Qwen2-MoE): sizes,
    attention, RoPE, norm, the special-token ids."""
    return {**decoder_config(c), "hidden_size": c.n_embd, "num_hidden_layers": c.n_layer,
            "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv_head, "head_dim": c.head_dim,
            "hidden_act": ACT_TO_HF[c.activation], "max_position_embeddings": c.block_size,
            "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta}, "attention_dropout": c.dropout}


def from_hf_config(hf: dict, source: str) -> ModelConfig:
    kind = hf.get("model_type")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise LmstackError(f"{source}: rope type '{rope.get('rope_type')}' is not supported (only default RoPE)")
    if kind == "mistral" and (hf.get("sliding_window") or 0) and hf["sliding_window"] < hf["max_position_embeddings"]:
        raise LmstackError(f"{source}: sliding-window attention is not supported")
    bias = bool(hf.get("attention_bias", False))
    if kind == "llama" and bool(hf.get("mlp_bias", False)) != bias:
        raise LmstackError(f"{source}: attention_bias and mlp_bias must agree")
    n_head = hf["num_attention_heads"]
    return ModelConfig(
        family="llama", vocab_size=hf["vocab_size"], block_size=hf["max_position_embeddings"],
        n_layer=hf["num_hidden_layers"], n_head=n_head, n_kv_head=hf.get("num_key_value_heads") or n_head,
        n_embd=hf["hidden_size"], head_dim=hf.get("head_dim") or hf["hidden_size"] // n_head,
        intermediate_size=hf["intermediate_size"], bias=bias if kind != "qwen2" else False,
        qkv_bias=True if kind == "qwen2" else bias, activation=activation(hf.get("hidden_act", "silu"), source),
        norm_eps=hf.get("rms_norm_eps", 1e-6), rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        tie_embeddings=hf.get("tie_word_embeddings", False))


def rules(model: nn.Module) -> list[Rule]:
    c = model.config
    qkv = (c.n_head * c.head_dim, c.n_kv_head * c.head_dim, c.n_kv_head * c.head_dim)
    gate_up = (c.intermediate_size, c.intermediate_size)
    rules = [Rule("tok_emb.weight", ("model.embed_tokens.weight",)), Rule("norm_f.weight", ("model.norm.weight",))]
    for i in range(c.n_layer):
        p, h = f"blocks.{i}.", f"model.layers.{i}."
        att = h + "self_attn."
        rules += [Rule(p + "norm1.weight", (h + "input_layernorm.weight",)),
                  Rule(p + "norm2.weight", (h + "post_attention_layernorm.weight",))]
        for kind in ("weight", "bias"):
            rules += [Rule(p + f"attn.qkv.{kind}", tuple(f"{att}{x}_proj.{kind}" for x in "qkv"), sizes=qkv),
                      Rule(p + f"attn.proj.{kind}", (f"{att}o_proj.{kind}",)),
                      Rule(p + f"mlp.gate_up.{kind}", (f"{h}mlp.gate_proj.{kind}", f"{h}mlp.up_proj.{kind}"),
                           sizes=gate_up),
                      Rule(p + f"mlp.proj.{kind}", (f"{h}mlp.down_proj.{kind}",))]
    return rules + [lm_head_rule(c)]


def checkpoint_names(hf: dict, model: nn.Module) -> dict:
    return without_buffers(hf)


def linear_slices(model: nn.Module) -> list[LinearSlice]:
    return block_linears(model, rules(model))


LLAMA = register(Family(
    name="llama", build=build, hf_model_types=("llama", "mistral", "qwen2"),
    hf_architectures=("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"),
    to_hf_config=to_hf_config, from_hf_config=from_hf_config, rules=rules, linear_slices=linear_slices,
    intermediate_size=intermediate_size, checkpoint_names=checkpoint_names, materialise=materialise))
