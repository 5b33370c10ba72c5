"""T5 v1.1 (Raffel et al. 2020; the v1.1 recipe: gated-GELU, untied head, no dropout in pre-training): the
encoder-decoder of ``lmstack.model.seq2seq``, read and written as Hugging Face's ``T5ForConditionalGeneration``.

Our fused tensors are Hugging Face's parts concatenated on dim 0: self-attention ``qkv`` = q, k, v; cross-attention
``kv`` = k, v; the feed-forward ``gate_up`` = wi_0 (the GELU branch), wi_1. The relative-position table is stored
under the first layer of each stack, as transformers keeps it.

Tied or not: transformers >= 5 writes ``tie_word_embeddings: true`` for every T5 and keeps an untied head by storing
``lm_head.weight`` beside ``shared.weight``, with ``scale_decoder_outputs`` saying whether the d_model**-0.5
output scaling applies; older configs (and Google's v1.1 checkpoints) say ``tie_word_embeddings: false`` for an
untied, unscaled head. We read both: tied unless the config says false or the weights carry their own
``lm_head.weight``; scaled as ``scale_decoder_outputs`` says, else when tied.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from safetensors import safe_open
from torch import nn

from lmstack.errors import LmstackError
from lmstack.io import read_json, write_json
from lmstack.model.config import ModelConfig
from lmstack.model.registry import Family, LinearSlice, Rule, register
from lmstack.model.seq2seq import EncoderDecoder, materialise
from lmstack.text.tokenizer import Tokenizer

SENTINEL = re.compile(r"<extra_id_(\d+)>")
# Copies of shared.weight some checkpoints store, and the cross-attention bias table old checkpoints carry unused.
_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
           "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")
_BIAS_TABLES = {"enc_bias.bias.weight": "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                "dec_bias.bias.weight": "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"}


def build(c: ModelConfig) -> EncoderDecoder:
    if c.bias or c.qkv_bias or c.n_kv_head != c.n_head or c.activation != "gelu_tanh":
        raise LmstackError("a t5-family model has no biases, n_kv_head == n_head and activation 'gelu_tanh' "
                           "(gated-GELU), as T5 v1.1 has")
    if c.n_decoder_layer is not None and c.n_decoder_layer <= 0:
        raise LmstackError(f"model.n_decoder_layer must be positive, got {c.n_decoder_layer}")
    if c.relative_attention_num_buckets < 4 or c.relative_attention_max_distance < 2:
        raise LmstackError("model.relative_attention_num_buckets must be >= 4 and relative_attention_max_distance "
                           ">= 2")
    return EncoderDecoder(c)


def intermediate_size(n_embd: int) -> int:
    """d_ff when unset: 8/3 d rounded up to 64 (a gated FF with a 4d MLP's parameters; t5-v1_1-base's 2048)."""
    return -(-int(8 * n_embd / 3) // 64) * 64


# ----------------------------------------------------------------------------------------------- configs

def _scaled(c: ModelConfig) -> bool:
    return c.tie_embeddings if c.output_scale is None else c.output_scale


def to_hf_config(model: nn.Module) -> dict:
    """``config.json`` as ``transformers.T5Config`` writes it; our ``ModelConfig`` rides under ``lmstack``."""
    c = model.config
    return {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "dtype": "float32",
            "vocab_size": c.vocab_size, "d_model": c.n_embd, "d_kv": c.head_dim, "d_ff": c.intermediate_size,
            "num_layers": c.n_layer, "num_decoder_layers": c.n_decoder_layer or c.n_layer, "num_heads": c.n_head,
            "relative_attention_num_buckets": c.relative_attention_num_buckets,
            "relative_attention_max_distance": c.relative_attention_max_distance, "dropout_rate": c.dropout,
            "layer_norm_epsilon": c.norm_eps, "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new",
            "is_gated_act": True, "is_encoder_decoder": True, "n_positions": c.block_size,
            "tie_word_embeddings": c.tie_embeddings, "scale_decoder_outputs": _scaled(c),
            "decoder_start_token_id": c.decoder_start_token_id, "pad_token_id": c.decoder_start_token_id,
            "eos_token_id": None,
            "use_cache": True, "lmstack": dataclasses.asdict(c)}


def _stored_names(config_json: Path) -> set[str] | None:
    """The tensor names in the folder beside ``config_json`` (safetensors headers only), or None if unknown."""
    folder = config_json.parent
    try:
        if (folder / "model.safetensors").is_file():
            with safe_open(str(folder / "model.safetensors"), "pt") as f:
                return set(f.keys())
        if (folder / "model.safetensors.index.json").is_file():
            return set(read_json(folder / "model.safetensors.index.json")["weight_map"])
    except (OSError, KeyError, json.JSONDecodeError, Exception):  # a corrupt file is named when weights are read
        return None
    return None


def from_hf_config(hf: dict, source: str) -> ModelConfig:
    """Our ``ModelConfig`` (family ``t5``) for a ``T5ForConditionalGeneration`` config.json (T5 v1.1 only)."""
    ff = hf.get("feed_forward_proj", "relu")
    if ff not in ("gated-gelu", "gated-gelu_new"):
        raise LmstackError(f"{source}: feed_forward_proj '{ff}' is not supported; the t5 family is T5 v1.1 "
                           "('gated-gelu'; T5 v1.0's 'relu' and other feed-forwards are not)")
    arch = (hf.get("architectures") or ["T5ForConditionalGeneration"])[0]
    if hf.get("is_decoder") or arch != "T5ForConditionalGeneration":
        raise LmstackError(f"{source}: architectures names {arch!r} (is_decoder {hf.get('is_decoder', False)}); the "
                           "t5 family reads T5ForConditionalGeneration folders only")
    stored = _stored_names(Path(source))
    tie = hf.get("tie_word_embeddings", True) is not False and not (stored and "lm_head.weight" in stored)
    scale = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)
    pad = hf.get("pad_token_id")
    start = hf.get("decoder_start_token_id")
    return ModelConfig(
        family="t5", vocab_size=hf["vocab_size"], block_size=hf.get("n_positions") or 512,
        n_layer=hf["num_layers"], n_decoder_layer=hf.get("num_decoder_layers") or hf["num_layers"],
        n_head=hf["num_heads"], n_embd=hf["d_model"], head_dim=hf["d_kv"], intermediate_size=hf["d_ff"],
        bias=False, activation="gelu_tanh", norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        dropout=hf.get("dropout_rate", 0.1), tie_embeddings=tie, output_scale=bool(scale),
        decoder_start_token_id=start if start is not None else (pad if pad is not None else 0))


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> dict:
    """The tokenizer, its tokenizer_config.json also naming the sentinels ``<extra_id_N>`` (in N order) as
    additional special tokens, as T5's tokenizers do; the pad and eos ids config.json records (T5 has no bos)."""
    tokenizer.save(folder)
    sentinels = sorted((int(m.group(1)), t) for t in tokenizer.backend.get_vocab(with_added_tokens=True)
                       if (m := SENTINEL.fullmatch(t)))
    if sentinels:
        write_json(folder / "tokenizer_config.json", {**read_json(folder / "tokenizer_config.json"),
                                                      "additional_special_tokens": [t for _, t in sentinels]})
    return {"pad_token_id": tokenizer.pad_id, "eos_token_id": tokenizer.eos_id}


# ----------------------------------------------------------------------------------------------- tensors

def rules(model: nn.Module) -> list[Rule]:
    c = model.config
    inner, ff = c.n_head * c.head_dim, c.intermediate_size
    rules = [Rule("tok_emb.weight", ("shared.weight",)),
             Rule("enc_norm.weight", ("encoder.final_layer_norm.weight",)),
             Rule("dec_norm.weight", ("decoder.final_layer_norm.weight",)),
             *[Rule(ours, (theirs,)) for ours, theirs in _BIAS_TABLES.items()]]

    def attention(p: str, h: str) -> list[Rule]:
        return [Rule(p + "qkv.weight", tuple(h + f"{x}.weight" for x in "qkv"), sizes=(inner,) * 3),
                Rule(p + "proj.weight", (h + "o.weight",))]

    def feed_forward(p: str, h: str) -> list[Rule]:
        return [Rule(p + "norm2.weight", (h + "layer_norm.weight",)),
                Rule(p + "mlp.gate_up.weight", (h + "DenseReluDense.wi_0.weight", h + "DenseReluDense.wi_1.weight"),
                     sizes=(ff, ff)),
                Rule(p + "mlp.proj.weight", (h + "DenseReluDense.wo.weight",))]

    for i in range(c.n_layer):
        p, h = f"enc_blocks.{i}.", f"encoder.block.{i}."
        rules += [Rule(p + "norm1.weight", (h + "layer.0.layer_norm.weight",)),
                  *attention(p + "attn.", h + "layer.0.SelfAttention."), *feed_forward(p, h + "layer.1.")]
    for i in range(model.n_decoder_layer):
        p, h = f"dec_blocks.{i}.", f"decoder.block.{i}."
        x = h + "layer.1.EncDecAttention."
        rules += [Rule(p + "norm1.weight", (h + "layer.0.layer_norm.weight",)),
                  *attention(p + "attn.", h + "layer.0.SelfAttention."),
                  Rule(p + "norm_cross.weight", (h + "layer.1.layer_norm.weight",)),
                  Rule(p + "cross.q.weight", (x + "q.weight",)),
                  Rule(p + "cross.kv.weight", (x + "k.weight", x + "v.weight"), sizes=(inner, inner)),
                  Rule(p + "cross.proj.weight", (x + "o.weight",)),
                  *feed_forward(p, h + "layer.2.")]
    return rules + [Rule("lm_head.weight", ("lm_head.weight",), saved=not c.tie_embeddings)]


def checkpoint_names(hf: dict, model: nn.Module) -> dict:
    """Drop the stored copies of the shared embedding (and an unused cross-attention table); a missing relative
    position table is named (a UMT5-style checkpoint keeps one per layer, T5 one per stack)."""
    for theirs in _BIAS_TABLES.values():
        if theirs not in hf:
            raise LmstackError(f"the relative-attention bias table '{theirs}' is missing; a T5 checkpoint keeps one "
                               "in the first layer of each stack")
    return {k: v for k, v in hf.items() if k not in _COPIES}


def linear_slices(model: nn.Module) -> list[LinearSlice]:
    """Every linear layer of both stacks under its Hugging Face name (q/k/v rows of our fused ones)."""
    out = []
    for rule in rules(model):
        module = rule.ours.removesuffix(".weight")
        if not module.startswith(("enc_blocks.", "dec_blocks.")) or ".norm" in module:
            continue
        rows = model.get_submodule(module).out_features
        start = 0
        for name, size in zip(rule.theirs, rule.sizes or (rows,)):
            out.append(LinearSlice(module, name.removesuffix(".weight"), start, start + size, False))
            start += size
    return out


T5 = register(Family(
    name="t5", build=build, hf_model_types=("t5",), hf_architectures=("T5ForConditionalGeneration",),
    to_hf_config=to_hf_config, from_hf_config=from_hf_config, rules=rules, linear_slices=linear_slices,
    intermediate_size=intermediate_size, checkpoint_names=checkpoint_names, materialise=materialise,
    save_tokenizer=save_tokenizer, peft_task_type="SEQ_2_SEQ_LM"))
