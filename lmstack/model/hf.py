"""Hugging Face format, lmstack's native on-disk format.

A model directory is ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json``, ``generation_config.json``)
that ``transformers.AutoModelForCausalLM.from_pretrained`` loads as ``GPT2LMHeadModel``, ``LlamaForCausalLM``
or ``Qwen2ForCausalLM``; and lmstack loads such directories written by ``transformers``. Weights are renamed by
the tables below (our fused q/k/v and gate/up projections split into Hugging Face's separate ones).
Nothing is unpickled: safetensors, or ``torch.load(weights_only=True)`` for legacy ``.bin`` files.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lmstack.config import build
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.config import ModelConfig
from lmstack.model.transformer import Transformer, build_model

_ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "silu": "silu"}
_ACT_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "silu": "silu",
                "swish": "silu"}
# Buffers some checkpoints carry that are recomputed, not learned.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")


@dataclass(frozen=True)
class Rule:
    """Our tensor ``ours`` is Hugging Face's ``theirs`` concatenated on dim 0 (optionally transposed)."""
    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False  # GPT-2 stores linears as Conv1D, [in, out]


def _gpt2_rules(c: ModelConfig) -> list[Rule]:
    rules = [Rule("tok_emb.weight", ("transformer.wte.weight",)), Rule("pos_emb.weight", ("transformer.wpe.weight",)),
             Rule("norm_f.weight", ("transformer.ln_f.weight",)), Rule("norm_f.bias", ("transformer.ln_f.bias",))]
    pairs = [("norm1", "ln_1", False), ("attn.qkv", "attn.c_attn", True), ("attn.proj", "attn.c_proj", True),
             ("norm2", "ln_2", False), ("mlp.fc", "mlp.c_fc", True), ("mlp.proj", "mlp.c_proj", True)]
    for i in range(c.n_layer):
        for ours, theirs, t in pairs:
            rules.append(Rule(f"blocks.{i}.{ours}.weight", (f"transformer.h.{i}.{theirs}.weight",), t))
            rules.append(Rule(f"blocks.{i}.{ours}.bias", (f"transformer.h.{i}.{theirs}.bias",)))
    return rules


def _llama_rules(c: ModelConfig) -> list[Rule]:
    rules = [Rule("tok_emb.weight", ("model.embed_tokens.weight",)), Rule("norm_f.weight", ("model.norm.weight",))]
    for i in range(c.n_layer):
        p, h = f"blocks.{i}.", f"model.layers.{i}."
        att = h + "self_attn."
        rules += [Rule(p + "norm1.weight", (h + "input_layernorm.weight",)),
                  Rule(p + "norm2.weight", (h + "post_attention_layernorm.weight",))]
        for kind in ("weight", "bias"):
            rules += [Rule(p + f"attn.qkv.{kind}", tuple(f"{att}{x}_proj.{kind}" for x in "qkv")),
                      Rule(p + f"attn.proj.{kind}", (f"{att}o_proj.{kind}",)),
                      Rule(p + f"mlp.gate_up.{kind}", (f"{h}mlp.gate_proj.{kind}", f"{h}mlp.up_proj.{kind}")),
                      Rule(p + f"mlp.proj.{kind}", (f"{h}mlp.down_proj.{kind}",))]
    return rules


def _rules(c: ModelConfig) -> list[Rule]:
    rules = (_gpt2_rules if c.family == "gpt2" else _llama_rules)(c)
    return rules + [Rule("lm_head.weight", ("lm_head.weight",))]


def _split_sizes(rule: Rule, c: ModelConfig) -> list[int]:
    if len(rule.theirs) == 3:
        return [c.n_head * c.head_dim, c.n_kv_head * c.head_dim, c.n_kv_head * c.head_dim]
    return [c.intermediate_size] * len(rule.theirs)


# ----------------------------------------------------------------------------------------------- configs

def to_hf_config(c: ModelConfig) -> dict:
    """The ``config.json`` transformers reads; our own config rides along under ``lmstack``."""
    common = {"vocab_size": c.vocab_size, "tie_word_embeddings": c.tie_embeddings, "dtype": "float32",
              "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
              "lmstack": dataclasses.asdict(c)}
    if c.family == "gpt2":
        if c.n_kv_head != c.n_head or c.head_dim * c.n_head != c.n_embd or c.qkv_bias != c.bias:
            raise LmstackError("a gpt2-family model needs n_kv_head == n_head, head_dim == n_embd/n_head and "
                               "qkv_bias == bias to match GPT2LMHeadModel")
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", **common, "n_positions": c.block_size,
                "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": c.intermediate_size,
                "activation_function": _ACT_TO_HF[c.activation], "layer_norm_epsilon": c.norm_eps,
                "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout}
    qwen2 = c.qkv_bias and not c.bias
    if c.qkv_bias != c.bias and not qwen2:
        raise LmstackError("a llama-family model with biases only outside q/k/v has no Hugging Face architecture")
    arch = ("Qwen2ForCausalLM", "qwen2") if qwen2 else ("LlamaForCausalLM", "llama")
    return {"architectures": [arch[0]], "model_type": arch[1], **common, "hidden_size": c.n_embd,
            "intermediate_size": c.intermediate_size, "num_hidden_layers": c.n_layer,
            "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv_head, "head_dim": c.head_dim,
            "hidden_act": _ACT_TO_HF[c.activation], "max_position_embeddings": c.block_size,
            "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
            "attention_bias": c.bias, "mlp_bias": c.bias, "attention_dropout": c.dropout}


def from_hf_config(hf: dict, source: str = "config.json") -> ModelConfig:
    """Our ``ModelConfig`` for a Hugging Face GPT-2, Llama, Mistral or Qwen2 config."""
    if "lmstack" in hf:
        return build(ModelConfig, hf["lmstack"], source)
    kind = hf.get("model_type")
    try:
        if kind == "gpt2":
            return ModelConfig(family="gpt2", vocab_size=hf["vocab_size"], block_size=hf["n_positions"],
                               n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                               intermediate_size=hf.get("n_inner") or 4 * hf["n_embd"], bias=True,
                               activation=_activation(hf.get("activation_function", "gelu_new"), source),
                               norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                               tie_embeddings=hf.get("tie_word_embeddings", True))
        if kind in ("llama", "mistral", "qwen2"):
            return _llama_config(hf, kind, source)
    except KeyError as e:
        raise LmstackError(f"{source}: missing field {e} for model_type '{kind}'") from e
    raise LmstackError(f"{source}: model_type '{kind}' is not supported; expected gpt2, llama, mistral or qwen2")


def _llama_config(hf: dict, kind: str, source: str) -> ModelConfig:
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
        qkv_bias=True if kind == "qwen2" else bias, activation=_activation(hf.get("hidden_act", "silu"), source),
        norm_eps=hf.get("rms_norm_eps", 1e-6), rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        tie_embeddings=hf.get("tie_word_embeddings", False))


def _activation(name: str, source: str) -> str:
    if name not in _ACT_FROM_HF:
        raise LmstackError(f"{source}: activation '{name}' is not supported; expected one of {', '.join(_ACT_FROM_HF)}")
    return _ACT_FROM_HF[name]


# ----------------------------------------------------------------------------------------------- weights

def to_hf_state(model: Transformer) -> dict[str, torch.Tensor]:
    """Our state dict under Hugging Face names. A bias-free GPT-2 gets zero biases (GPT2 always has them)."""
    c, state = model.config, model.state_dict()
    out = {}
    for rule in _rules(c):
        if rule.ours == "lm_head.weight" and c.tie_embeddings:
            continue  # tied: transformers re-ties it from the input embedding
        t = state.get(rule.ours)
        if t is None:
            if c.family != "gpt2" or not rule.ours.endswith("bias"):
                continue
            t = torch.zeros(state[rule.ours[:-4] + "weight"].shape[0])
        parts = t.split(_split_sizes(rule, c), dim=0) if len(rule.theirs) > 1 else [t]
        for name, part in zip(rule.theirs, parts):
            out[name] = (part.t() if rule.transpose else part).detach().cpu().contiguous()
    return out


def from_hf_state(hf: dict[str, torch.Tensor], model: Transformer, source: str) -> dict[str, torch.Tensor]:
    """Hugging Face tensors renamed (and fused) into ``model``'s state dict; every mismatch is an error."""
    c, expected = model.config, model.state_dict()
    if c.family == "gpt2" and "wte.weight" in hf:  # the original GPT-2 files have no "transformer." prefix
        hf = {k if k.startswith("lm_head") else "transformer." + k: v for k, v in hf.items()}
    hf = {k: v for k, v in hf.items() if not k.endswith(_IGNORED_SUFFIXES)}
    out = {}
    for rule in _rules(c):
        if rule.ours not in expected or (rule.ours == "lm_head.weight" and c.tie_embeddings):
            for name in rule.theirs:
                hf.pop(name, None)  # zero biases of a bias-free GPT-2, or the tied head's copy
            continue
        missing = [n for n in rule.theirs if n not in hf]
        if missing:
            raise LmstackError(f"{source}: tensor '{missing[0]}' is missing; is this checkpoint of another model?")
        parts = [hf.pop(n) for n in rule.theirs]
        t = torch.cat([p.t() if rule.transpose else p for p in parts], dim=0)
        if t.shape != expected[rule.ours].shape:
            raise LmstackError(f"{source}: tensor '{rule.theirs[0]}' has shape {tuple(parts[0].shape)}, but the "
                               f"config expects {tuple(expected[rule.ours].shape)}; the checkpoint is of another shape")
        out[rule.ours] = t
    if hf:
        raise LmstackError(f"{source}: unexpected tensors {sorted(hf)[:3]}; the checkpoint does not match config.json")
    return out


@dataclass(frozen=True)
class LinearSlice:
    """Rows [start, end) of our linear layer ``module`` are Hugging Face's linear layer ``hf_module``."""
    module: str  # e.g. "blocks.0.attn.qkv"
    hf_module: str  # e.g. "model.layers.0.self_attn.q_proj"
    start: int
    end: int
    transposed: bool  # Hugging Face stores it as GPT-2's Conv1D ([in, out]): peft's fan_in_fan_out


def linear_slices(model: Transformer) -> list[LinearSlice]:
    """Every linear layer inside the blocks under its Hugging Face module name(s): what PEFT methods target,
    and how an adapter trained here lines up with the exported model (and with peft)."""
    out = []
    for rule in _rules(model.config):
        module = rule.ours.removesuffix(".weight")
        if not (rule.ours.endswith(".weight") and module.startswith("blocks.")):
            continue
        rows = getattr(model.get_submodule(module), "out_features", None)  # linear layers (adapted ones too)
        if rows is None:
            continue
        sizes = _split_sizes(rule, model.config) if len(rule.theirs) > 1 else [rows]
        start = 0
        for name, size in zip(rule.theirs, sizes):
            out.append(LinearSlice(module, name.removesuffix(".weight"), start, start + size, rule.transpose))
            start += size
    return out


# ----------------------------------------------------------------------------------------------- files

def save_model(model: Transformer, path: str | Path, tokenizer=None, generation_config: dict | None = None) -> Path:
    """Write a model directory atomically (the whole folder is swapped in at the end)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_model_files(model, tmp, tokenizer, generation_config)
    return path


def write_model_files(model: Transformer, folder: Path, tokenizer=None, generation_config: dict | None = None) -> None:
    """Write config.json, model.safetensors, generation_config.json (and the tokenizer) into ``folder``."""
    config = to_hf_config(model.config)
    gen = dict(generation_config or {})
    if tokenizer is not None:
        tokenizer.save(folder)
        ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
        config.update(ids)
        gen = {**ids, **gen}
    write_json(folder / "config.json", config)
    write_json(folder / "generation_config.json", gen)
    save_file(to_hf_state(model), str(folder / "model.safetensors"), metadata={"format": "pt"})


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Transformer:
    """Load a model directory written by lmstack or by ``transformers`` (GPT-2, Llama, Mistral, Qwen2)."""
    path = Path(path)
    if not path.is_dir():
        raise LmstackError(f"{path}: model directory not found")
    config = from_hf_config(read_json(path / "config.json"), str(path / "config.json"))
    with torch.device("meta"):
        model = build_model(config)
    state = from_hf_state(read_weights(path), model, str(path))
    model.load_state_dict(state, strict=False, assign=True)
    model = _materialise(model)
    return model.to(device=device, dtype=dtype) if dtype else model.to(device)


def _materialise(model: Transformer) -> Transformer:
    """Re-tie the head and rebuild non-persistent buffers (RoPE tables) left on the meta device."""
    if model.config.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    if model.rope is not None:
        model.rope = type(model.rope)(model.config.head_dim, model.config.block_size, model.config.rope_theta)
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise LmstackError(f"checkpoint is missing tensors for {meta[:3]}")
    return model


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model directory: one safetensors file, a sharded set, or a legacy .bin."""
    try:
        if (path / "model.safetensors").is_file():
            return load_file(str(path / "model.safetensors"))
        index = path / "model.safetensors.index.json"
        if index.is_file():
            out = {}
            for shard in sorted(set(read_json(index)["weight_map"].values())):
                out.update(load_file(str(path / shard)))
            return out
        if (path / "pytorch_model.bin").is_file():
            return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, json.JSONDecodeError) as e:
        raise LmstackError(f"{path}: weights are truncated or corrupt ({str(e).splitlines()[0]})") from e
    raise LmstackError(f"{path}: no model.safetensors (or sharded index, or pytorch_model.bin) found")
