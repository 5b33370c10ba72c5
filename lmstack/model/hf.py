"""Hugging Face format, lmstack's native on-disk format, for every registered family.

A model directory is ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json``, and for a decoder
``generation_config.json``) that ``transformers`` loads (``AutoModelForCausalLM``: ``GPT2LMHeadModel``,
``LlamaForCausalLM``, ``Qwen2ForCausalLM``; ``BertModel`` / ``BertFor*`` for an encoder); and lmstack loads such
directories written by ``transformers``. A decoder with a registered head (``registry.Head``: a scalar score,
``LlamaForSequenceClassification``) is read and written the same way. What differs between families (config
fields, tensor names, which of our fused tensors are which of theirs) is the family's
(``lmstack.model.families``); this module only applies it. Nothing is unpickled: safetensors, or
``torch.load(weights_only=True)`` for legacy ``.bin`` files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lmstack.config import build
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.config import ModelConfig
from lmstack.text.chat import ChatFormat
from lmstack.model.registry import Family, build_model, family_for_hf, family_of, get_family, head_for_hf, names
from lmstack.model.skeleton import empty_weights


# ----------------------------------------------------------------------------------------------- configs

def to_hf_config(model: nn.Module) -> dict:
    """The ``config.json`` transformers reads; our own config rides along under ``lmstack``."""
    return family_of(model).to_hf_config(model)


def from_hf_config(hf: dict, source: str = "config.json") -> ModelConfig:
    """Our ``ModelConfig`` for a ``config.json`` of any registered family (ours exactly, when it carries it)."""
    family = family_for_hf(hf, source)
    if "lmstack" in hf:
        if not isinstance(hf["lmstack"], dict):
            raise LmstackError(f"{source}: the \"lmstack\" block must be a mapping of ModelConfig fields")
        config = build(ModelConfig, hf["lmstack"], f"{source}: lmstack")
        _check_agreement(hf, config, family, source)
        return config
    try:
        return family.from_hf_config(hf, source)
    except KeyError as e:
        raise LmstackError(f"{source}: missing field {e} for model_type '{hf.get('model_type')}'") from e


def _check_agreement(hf: dict, config: ModelConfig, family: Family, source: str) -> None:
    """Refuse a ``config.json`` whose Hugging Face fields say other than its ``lmstack`` block (an edit to one
    that transformers would follow and lmstack would not), naming the Hugging Face key, the lmstack field and
    both values. A key counts when it differs from what the block would write and changes what it is read as."""
    try:
        with empty_weights():
            written = family.to_hf_config(build_model(config))
    except LmstackError as e:
        raise LmstackError(f"{source}: the lmstack block: {e}") from e
    baseline = family.from_hf_config(written, source)
    for key, value in hf.items():
        if key == "lmstack" or key not in written or written[key] == value:
            continue
        try:
            edited = family.from_hf_config({**written, key: value}, source)
        except (LmstackError, KeyError, TypeError, ValueError, ZeroDivisionError):
            edited = None
        fields = [f.name for f in dataclasses.fields(ModelConfig)
                  if edited is None or getattr(edited, f.name) != getattr(baseline, f.name)]
        if edited is not None and not fields:
            continue  # a key that does not change the model (architectures, a token id, ...)
        field = fields[0] if edited is not None else None
        ours = (f"lmstack.{field} is {getattr(config, field)!r}" if field
                else f"the lmstack block implies {written[key]!r}")
        raise LmstackError(f"{source}: \"{key}\" is {value!r} but {ours}; the Hugging Face fields and the "
                           "lmstack block must agree (edit both, or delete the lmstack block to use the Hugging "
                           "Face fields)")


# ----------------------------------------------------------------------------------------------- weights

def to_hf_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict under Hugging Face names, fused tensors split into their parts."""
    state = model.state_dict()
    out = {}
    for rule in family_of(model).rules(model):
        t = state.get(rule.ours)
        if not rule.saved or (t is None and not rule.zeros):
            continue
        if t is None:
            t = torch.zeros(state[rule.ours.removesuffix("bias") + "weight"].shape[0])
        parts = t.split(list(rule.sizes), dim=0) if rule.sizes else [t]
        for name, part in zip(rule.theirs, parts):
            out[name] = (part.t() if rule.transpose else part).detach().cpu().contiguous()
    return out


def from_hf_state(hf: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Hugging Face tensors renamed (and fused) into ``model``'s state dict; every mismatch is an error."""
    family = family_of(model)
    hf, expected, out = family.checkpoint_names(dict(hf), model), model.state_dict(), {}
    for rule in family.rules(model):
        if not rule.saved or rule.ours not in expected:
            for name in rule.theirs:
                hf.pop(name, None)  # zero biases of a bias-free GPT-2, or the tied head's copy
            continue
        missing = [n for n in rule.theirs if n not in hf]
        if missing:
            raise LmstackError(f"{source}: tensor '{missing[0]}' is missing; is this checkpoint of another model?")
        want = expected[rule.ours].shape
        parts = []
        for name, rows in zip(rule.theirs, rule.sizes or (want[0],)):
            part = hf.pop(name)
            part = part.t() if rule.transpose else part
            if part.shape != (rows, *want[1:]):
                raise LmstackError(f"{source}: tensor '{name}' has shape {tuple(part.shape)}, but the config expects "
                                   f"{(rows, *want[1:])}; the checkpoint is of another shape")
            parts.append(part)
        out[rule.ours] = torch.cat(parts, dim=0)
    if hf:
        raise LmstackError(f"{source}: unexpected tensors {sorted(hf)[:3]}; the checkpoint does not match config.json")
    return out


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


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Fill ``model`` (built on the "meta" device: no memory spent on an init) with the weights in ``path``."""
    model.load_state_dict(from_hf_state(read_weights(path), model, str(path)), strict=False, assign=True)
    model = family_of(model).materialise(model)
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise LmstackError(f"{path}: checkpoint is missing tensors for {meta[:3]}")
    return model


# ----------------------------------------------------------------------------------------------- files

def save_model(model: nn.Module, path: str | Path, tokenizer=None, generation_config: dict | None = None) -> Path:
    """Write a model directory atomically (the whole folder is swapped in at the end)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_model_files(model, tmp, tokenizer, generation_config)
    return path


def _reply_ends(tokenizer) -> dict:
    """generation_config's ``eos_token_id`` for a tokenizer with a chat template: eos and every turn-end id (a
    list, as Qwen's chat models write it), so ``transformers`` stops a reply at its turn's end; {} without one."""
    try:
        ends = ChatFormat(tokenizer).end_ids
    except LmstackError:  # no chat template: eos alone ends a generation
        return {}
    first = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    return {"eos_token_id": first + sorted(ends - set(first))} if len(ends) > 1 else {}


def write_model_files(model: nn.Module, folder: Path, tokenizer=None, generation_config: dict | None = None) -> None:
    """Write config.json, model.safetensors, the tokenizer and, for a decoder, generation_config.json into
    ``folder``; the tokenizer's special-token ids go into the configs."""
    family = family_of(model)
    config = family.to_hf_config(model)
    gen = dict(generation_config or {})
    if "decoder_start_token_id" in config:  # an encoder-decoder: transformers' generate reads it from here
        gen = {"decoder_start_token_id": config["decoder_start_token_id"], **gen}
    if tokenizer is not None:
        ids = family.save_tokenizer(tokenizer, folder)
        config.update(ids)
        gen = {**ids, **(_reply_ends(tokenizer) if family.generates else {}), **gen}
    write_json(folder / "config.json", config)
    if family.generates:
        write_json(folder / "generation_config.json", gen)
    save_file(to_hf_state(model), str(folder / "model.safetensors"), metadata={"format": "pt"})


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """Load a model directory written by lmstack or by ``transformers`` (GPT-2, Llama, Mistral, Qwen2, with a
    registered head where config.json's architectures name one; a BERT folder gives the bare encoder:
    ``load_encoder`` adds a head)."""
    path = Path(path)
    hf = _read_hf(path)
    return _load(path, hf, from_hf_config(hf, str(path / "config.json")), device, dtype)


def load_causal_lm(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """``load_model`` for what decodes or scores text: a folder of an encoder family, or of a decoder with a task
    head (a reward model), is refused in one line, before any weight is read."""
    path = Path(path)
    hf = _read_hf(path)
    config = from_hf_config(hf, str(path / "config.json"))
    family = get_family(config.family)
    if not family.generates:
        raise LmstackError(f"{path}: a {config.family} encoder predicts no next token; this needs a causal "
                           f"language model ({', '.join(n for n in names() if get_family(n).generates)})")
    if head_for_hf(hf, family) is not None:
        raise LmstackError(f"{path}: holds a {hf['architectures'][0]} (a score head, no next-token head); this needs "
                           "a causal language model")
    return _load(path, hf, config, device, dtype)


def _read_hf(path: Path) -> dict:
    if not path.is_dir():
        raise LmstackError(f"{path}: model directory not found")
    return read_json(path / "config.json")


def _load(path: Path, hf: dict, config: ModelConfig, device: str | torch.device, dtype: torch.dtype | None
          ) -> nn.Module:
    head = head_for_hf(hf, get_family(config.family))
    with empty_weights():
        model = build_model(config)
        model = head.wrap(model, hf) if head is not None else model
    model = load_weights(model, path)
    return model.to(device=device, dtype=dtype) if dtype else model.to(device)
