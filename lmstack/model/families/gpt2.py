"""GPT-2 (Radford et al. 2019): learned positions, pre-norm LayerNorm, GELU MLP, biases, tied embeddings.

Hugging Face's ``GPT2LMHeadModel`` stores its linears as Conv1D ([in, out]), so they are transposed here, and
always has biases: a bias-free model of ours is written with zero biases.
"""

from __future__ import annotations

from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.blocks import MLP, Attention, Block, layer_norm
from lmstack.model.config import ModelConfig
from lmstack.model.families.hf_common import (ACT_TO_HF, activation, decoder_config, lm_head_rule,
                                              without_buffers)
from lmstack.model.registry import Family, LinearSlice, Rule, block_linears, register
from lmstack.model.transformer import Transformer, materialise


def build(c: ModelConfig) -> Transformer:
    def block() -> Block:
        return Block(Attention(c, rope=False), MLP(c), layer_norm(c.n_embd, c.norm_eps, c.bias),
                     layer_norm(c.n_embd, c.norm_eps, c.bias), c.dropout)
    return Transformer(c, [block() for _ in range(c.n_layer)], layer_norm(c.n_embd, c.norm_eps, c.bias),
                       pos_emb=nn.Embedding(c.block_size, c.n_embd), rope=None)


def to_hf_config(model: nn.Module) -> dict:
    c = model.config
    if c.n_kv_head != c.n_head or c.head_dim * c.n_head != c.n_embd or c.qkv_bias != c.bias:
        raise LmstackError("a gpt2-family model needs n_kv_head == n_head, head_dim == n_embd/n_head and "
                           "qkv_bias == bias to match GPT2LMHeadModel")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", **decoder_config(c),
            "n_positions": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
            "n_inner": c.intermediate_size,
            "activation_function": ACT_TO_HF[c.activation], "layer_norm_epsilon": c.norm_eps,
            "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout}


def from_hf_config(hf: dict, source: str) -> ModelConfig:
    return ModelConfig(family="gpt2", vocab_size=hf["vocab_size"], block_size=hf["n_positions"],
                       n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                       intermediate_size=hf.get("n_inner") or 4 * hf["n_embd"], bias=True,
                       activation=activation(hf.get("activation_function", "gelu_new"), source),
                       norm_eps=hf.get("layer_norm_epsilon", 1e-5), tie_embeddings=hf.get("tie_word_embeddings", True))


def rules(model: nn.Module) -> list[Rule]:
    c = model.config
    rules = [Rule("tok_emb.weight", ("transformer.wte.weight",)), Rule("pos_emb.weight", ("transformer.wpe.weight",)),
             Rule("norm_f.weight", ("transformer.ln_f.weight",)), Rule("norm_f.bias", ("transformer.ln_f.bias",),
                                                                       zeros=True)]
    pairs = [("norm1", "ln_1", False), ("attn.qkv", "attn.c_attn", True), ("attn.proj", "attn.c_proj", True),
             ("norm2", "ln_2", False), ("mlp.fc", "mlp.c_fc", True), ("mlp.proj", "mlp.c_proj", True)]
    for i in range(c.n_layer):
        for ours, theirs, t in pairs:
            rules.append(Rule(f"blocks.{i}.{ours}.weight", (f"transformer.h.{i}.{theirs}.weight",), t))
            rules.append(Rule(f"blocks.{i}.{ours}.bias", (f"transformer.h.{i}.{theirs}.bias",), zeros=True))
    return rules + [lm_head_rule(c)]


def checkpoint_names(hf: dict, model: nn.Module) -> dict:
    """The original GPT-2 files have no "transformer." prefix; attention-mask buffers are not weights."""
    if "wte.weight" in hf:
        hf = {k if k.startswith("lm_head") else "transformer." + k: v for k, v in hf.items()}
    return without_buffers(hf)


def linear_slices(model: nn.Module) -> list[LinearSlice]:
    return block_linears(model, rules(model))


GPT2 = register(Family(
    name="gpt2", build=build, hf_model_types=("gpt2",), hf_architectures=("GPT2LMHeadModel",),
    to_hf_config=to_hf_config, from_hf_config=from_hf_config, rules=rules, linear_slices=linear_slices,
    checkpoint_names=checkpoint_names, materialise=materialise))
