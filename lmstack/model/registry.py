"""The model-family registry: what one family (GPT-2, Llama, BERT, ...) is, and how a name or a Hugging Face
``config.json`` finds it.

A ``Family`` bundles a family's builder, its Hugging Face config mapping both ways, its tensor-name ``Rule``s
and its ``LinearSlice``s (which of our linear layers, or which rows of a fused one, is which Hugging Face
layer). The generic reader/writer (``lmstack.model.hf``), ``build_model`` and the PEFT methods only ever ask
the registry, so a new family is one new module that calls ``register`` and touches no other family.

A ``Head`` is a task head that fits on the bare model of any family it ``applies`` to (a scalar score on a
decoder: ``LlamaForSequenceClassification``, ``GPT2ForSequenceClassification`` ...). A model carrying one names
it as its class attribute ``hf_head``; ``family_of`` then answers with the family as the head sees it
(``Head.on``), so the reader/writer handles every family-head pair without knowing either. A new head is one
module that calls ``register_head``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from lmstack.errors import LmstackError

if TYPE_CHECKING:  # the config imports this module to check family names
    from lmstack.model.config import ModelConfig
    from lmstack.text.tokenizer import Tokenizer


@dataclass(frozen=True)
class Rule:
    """Our tensor ``ours`` is Hugging Face's ``theirs`` concatenated on dim 0 (each optionally transposed)."""
    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False  # GPT-2 stores linears as Conv1D, [in, out]
    sizes: tuple[int, ...] = ()  # rows of each part of a fused tensor (q/k/v, gate/up); () for one part
    saved: bool = True  # False: a copy (a tied head), neither written nor read; dropped from checkpoints
    zeros: bool = False  # absent here (a bias-free GPT-2) but always present there: written as zeros


@dataclass(frozen=True)
class LinearSlice:
    """Rows [start, end) of our linear layer ``module`` are Hugging Face's linear layer ``hf_module``."""
    module: str  # e.g. "blocks.0.attn.qkv"
    hf_module: str  # e.g. "model.layers.0.self_attn.q_proj"
    start: int
    end: int
    transposed: bool  # Hugging Face stores it as GPT-2's Conv1D ([in, out]): peft's fan_in_fan_out


def _same(x, *_):
    return x


def save_decoder_tokenizer(tokenizer: Tokenizer, folder: Path) -> dict:
    """Save ``tokenizer``; the special-token ids config.json and generation_config.json record."""
    tokenizer.save(folder)
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}


@dataclass(frozen=True)
class Family:
    """One model family: how to build it, and how Hugging Face names its config and tensors."""
    name: str
    build: Callable[[ModelConfig], nn.Module]
    hf_model_types: tuple[str, ...]  # the config.json model_types it reads (the first is the one it writes)
    to_hf_config: Callable[[nn.Module], dict]  # config.json for a model (bare or with a head)
    from_hf_config: Callable[[dict, str], ModelConfig]  # (config.json, source for errors) -> our config
    rules: Callable[[nn.Module], list[Rule]]  # our state-dict names -> Hugging Face's, for this model
    linear_slices: Callable[[nn.Module], list[LinearSlice]]  # the block linears PEFT methods target
    hf_architectures: tuple[str, ...] = ()  # architectures that name it where model_type is absent
    intermediate_size: Callable[[int], int] = lambda n_embd: 4 * n_embd  # the MLP width when unset
    checkpoint_names: Callable[[dict, nn.Module], dict] = _same  # a checkpoint's tensors renamed / dropped
    materialise: Callable[[nn.Module], nn.Module] = _same  # after loading on "meta": re-tie, rebuild buffers
    save_tokenizer: Callable[[Tokenizer, Path], dict] = save_decoder_tokenizer  # -> config.json token ids
    generates: bool = True  # a decoder: its folder gets a generation_config.json
    peft_task_type: str = "CAUSAL_LM"


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to the registry (a second family of the same name is an error)."""
    if family.name in _FAMILIES:
        raise LmstackError(f"model family '{family.name}' is already registered")
    _FAMILIES[family.name] = family
    return family


def names() -> list[str]:
    return list(_FAMILIES)


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise LmstackError(f"model.family '{name}' is not a registered family; choose one of {', '.join(_FAMILIES)}")
    return _FAMILIES[name]


def family_of(model: nn.Module) -> Family:
    """The family of a built model (bare, or with a task head): its ``config.family``, seen through the model's
    ``hf_head`` where it has one (``Head.on``)."""
    family = get_family(model.config.family)
    head = getattr(model, "hf_head", None)
    return head.on(family) if head is not None else family


def family_for_hf(hf: dict, source: str = "config.json") -> Family:
    """The family that reads a Hugging Face ``config.json``: ours (under ``lmstack``), then by model_type, then by
    architectures."""
    if isinstance(hf.get("lmstack"), dict) and "family" in hf["lmstack"]:
        return get_family(hf["lmstack"]["family"])
    kind, archs = hf.get("model_type"), hf.get("architectures") or []
    for family in _FAMILIES.values():
        if kind in family.hf_model_types or (kind is None and set(archs) & set(family.hf_architectures)):
            return family
    known = [t for f in _FAMILIES.values() for t in f.hf_model_types]
    raise LmstackError(f"{source}: model_type '{kind}' is not supported; expected one of {', '.join(known)}")


def build_model(config: ModelConfig) -> nn.Module:
    """Assemble a model of ``config.family`` from the shared blocks (an encoder comes bare: heads are in
    ``heads.py``)."""
    return get_family(config.family).build(config)


def linear_slices(model: nn.Module) -> list[LinearSlice]:
    """Every linear layer inside ``model``'s blocks under its Hugging Face module name(s), from its family."""
    return family_of(model).linear_slices(model)


def block_linears(model: nn.Module, rules: list[Rule]) -> list[LinearSlice]:
    """The linear layers inside the blocks under their Hugging Face module name(s), read off ``rules``: what
    PEFT methods target, and how an adapter trained here lines up with the exported model (and with peft)."""
    out = []
    for rule in rules:
        module = rule.ours.removesuffix(".weight")
        if not rule.ours.endswith(".weight") or not (module.startswith("blocks.") or ".blocks." in module):
            continue
        rows = getattr(model.get_submodule(module), "out_features", None)  # linear layers (adapted ones too)
        if rows is None:
            continue
        start = 0
        for name, size in zip(rule.theirs, rule.sizes or (rows,)):
            out.append(LinearSlice(module, name.removesuffix(".weight"), start, start + size, rule.transpose))
            start += size
    return out


# ----------------------------------------------------------------------------------------------- heads

CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")  # how the architectures of causal LMs end (LlamaForCausalLM)


@dataclass(frozen=True)
class Head:
    """A task head on the bare model of any family it ``applies`` to, saved as Hugging Face's ``<Stem><suffix>``
    (the causal LM's architecture with ``CAUSAL_LM_SUFFIXES`` replaced: ``LlamaForCausalLM`` ->
    ``LlamaForSequenceClassification``, ``GPT2LMHeadModel`` -> ``GPT2ForSequenceClassification``).

    The model holds the bare one as attribute ``body``; the body's tensors keep the family's Hugging Face names
    (``model.*``, ``transformer.*``), its own LM head is dropped (absent from the model, so neither written nor
    read), and the head's tensors follow ``rules``.
    """
    name: str
    hf_suffix: str  # e.g. "ForSequenceClassification"
    wrap: Callable[[nn.Module, dict], nn.Module]  # (bare model, config.json) -> the model with this head
    hf_config: Callable[[nn.Module], dict]  # the head's own config.json fields (num_labels, pad_token_id ...)
    rules: Callable[[nn.Module], list[Rule]]  # the head's own tensors
    body: str = "backbone"
    applies: Callable[[Family], bool] = lambda family: family.generates  # the families it fits on
    peft_task_type: str = "SEQ_CLS"

    def architecture(self, family_arch: str) -> str:
        """``LlamaForCausalLM`` -> ``Llama`` + ``hf_suffix``."""
        for suffix in CAUSAL_LM_SUFFIXES:
            family_arch = family_arch.removesuffix(suffix)
        return family_arch + self.hf_suffix

    def on(self, family: Family) -> Family:
        """``family`` as a model with this head sees it: config, tensor names and linears of the body, prefixed."""
        body = lambda model: getattr(model, self.body)  # noqa: E731

        def to_hf_config(model: nn.Module) -> dict:
            config = family.to_hf_config(body(model))
            arch = self.architecture((config.get("architectures") or [family.name])[0])
            return {**config, "architectures": [arch], **self.hf_config(model)}

        def rules(model: nn.Module) -> list[Rule]:
            prefix = self.body + "."
            return [dataclasses.replace(r, ours=prefix + r.ours) for r in family.rules(body(model))] + self.rules(model)

        def materialise(model: nn.Module) -> nn.Module:
            family.materialise(body(model))
            return model

        return dataclasses.replace(
            family, to_hf_config=to_hf_config, rules=rules,
            linear_slices=lambda model: block_linears(model, rules(model)),
            checkpoint_names=lambda hf, model: family.checkpoint_names(hf, body(model)),
            materialise=materialise, generates=False, peft_task_type=self.peft_task_type)


_HEADS: dict[str, Head] = {}


def register_head(head: Head) -> Head:
    """Add ``head`` to the registry (a second head of the same name is an error)."""
    if head.name in _HEADS:
        raise LmstackError(f"model head '{head.name}' is already registered")
    _HEADS[head.name] = head
    return head


def head_for_hf(hf: dict, family: Family) -> Head | None:
    """The registered head a ``config.json`` names in its architectures (for a family it applies to), or None."""
    archs = hf.get("architectures") or []
    for head in _HEADS.values():
        if head.applies(family) and any(a.endswith(head.hf_suffix) for a in archs):
            return head
    return None
