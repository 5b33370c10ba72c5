"""Hugging Face vocabulary that several families share: activation names, the fields every decoder's
``config.json`` has, the causal LM head, and the recomputed buffers some checkpoints carry."""

from __future__ import annotations

import dataclasses

from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.model.registry import Rule

ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "silu": "silu"}
ACT_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "silu": "silu",
               "swish": "silu"}
# Buffers some decoder checkpoints carry that are recomputed, not learned.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")


def activation(name: str, source: str, field: str = "activation") -> str:
    """Our activation for a Hugging Face one, or a one-line error naming it."""
    if name not in ACT_FROM_HF:
        raise LmstackError(f"{source}: {field} '{name}' is not supported; expected one of {', '.join(ACT_FROM_HF)}")
    return ACT_FROM_HF[name]


def decoder_config(c: ModelConfig) -> dict:
    """The config.json fields every causal LM has; our own config rides along under ``lmstack``."""
    return {"vocab_size": c.vocab_size, "tie_word_embeddings": c.tie_embeddings, "dtype": "float32",
            "bos_token_id": None, "eos_token_id": None, "pad_token_id": None, "lmstack": dataclasses.asdict(c)}


def lm_head_rule(c: ModelConfig) -> Rule:
    """The output layer; tied, it is a copy of the input embedding that transformers re-ties (not stored)."""
    return Rule("lm_head.weight", ("lm_head.weight",), saved=not c.tie_embeddings)


def without_buffers(hf: dict) -> dict:
    return {k: v for k, v in hf.items() if not k.endswith(IGNORED_SUFFIXES)}
