"""The adaptation methods, and adapter directories on disk.

A method is a transformation of the model made where it is loaded (as torchtune builds LoRA in at build
time): ``method.apply(model, tokenizer)`` freezes what stays fixed and adds what trains, and returns the model
to train. Each method also says what it saves (``tensors``, ``peft_config``) and how to put it back
(``from_peft_config`` + ``load_tensors``). ``full`` fine-tuning trains everything and saves a whole model.

An adapter directory is laid out as peft's: ``adapter_model.safetensors`` + ``adapter_config.json`` (peft's
fields only, so peft reads it without complaint), plus ``lmstack_adapter.json`` (the method, and a fingerprint
of the base model's config so an adapter is never applied to a base it was not trained on) and the tokenizer
it was trained with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lmstack.adapt.bottleneck import Adapter
from lmstack.adapt.lora import LoRA
from lmstack.adapt.prefix import Prefix
from lmstack.adapt.prompt import Prompt
from lmstack.text.tokenizer import Tokenizer
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.hf import load_causal_lm


@dataclass
class Full:
    """Full fine-tuning: every weight trains; the result is a whole model directory."""

    def apply(self, model: nn.Module, tokenizer=None) -> nn.Module:
        return model.requires_grad_(True)


OURS = "lmstack_adapter.json"  # beside peft's adapter_config.json: the method and the base model's fingerprint
METHODS = {"full": Full, "lora": LoRA, "adapter": Adapter, "prefix": Prefix, "prompt": Prompt}
BY_PEFT_TYPE = {cls.peft_type: cls for cls in (LoRA, Adapter, Prefix, Prompt)}


def count_parameters(model: nn.Module) -> dict:
    """Trainable and total parameters (shared tensors counted once), as peft's print_trainable_parameters."""
    params = {id(p): p for p in model.parameters()}.values()
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    return {"trainable_params": trainable, "total_params": total, "trainable_fraction": trainable / total}


def base_fingerprint(model: nn.Module) -> str:
    """sha256 of the base model's config: adapters record it and refuse a base with another."""
    config = getattr(model, "base", model).config
    return hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()


def save_adapter(method, model: nn.Module, path: str | Path, base_fp: str, base_path: str,
                 tokenizer: Tokenizer | None = None) -> Path:
    """Write ``method``'s trained weights of ``model`` as an adapter directory (the folder swapped in whole)."""
    path = Path(path)
    tensors = {k: v.float().contiguous() for k, v in method.tensors(model).items()}
    ours = {"method": _name(method), "base_config_sha256": base_fp, "config": dataclasses.asdict(method)}
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        write_json(tmp / "adapter_config.json", {**method.peft_config(model), "base_model_name_or_path": base_path})
        write_json(tmp / OURS, ours)
        if tokenizer is not None:
            tokenizer.save(tmp)
    return path


def load_adapter(model: nn.Module, path: str | Path, tokenizer: Tokenizer | None = None) -> nn.Module:
    """``model`` with the adapter in ``path`` applied (ours, or a peft LoRA / prompt / prefix adapter)."""
    path = Path(path)
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise LmstackError(f"{path}: not an adapter directory (adapter_config.json missing)")
    config = read_json(config_file)
    ours = read_json(path / OURS) if (path / OURS).is_file() else {}  # absent in adapters peft trained
    if ours.get("base_config_sha256") not in (None, base_fingerprint(model)):
        raise LmstackError(f"{path}: this adapter was trained on another base model "
                           f"({config.get('base_model_name_or_path')}); its config fingerprint does not match")
    cls = BY_PEFT_TYPE.get(config.get("peft_type"))
    if cls is None:
        raise LmstackError(f"{config_file}: peft_type {config.get('peft_type')!r} is not supported; "
                           f"expected one of {', '.join(BY_PEFT_TYPE)}")
    method = cls.from_peft_config(config)
    try:
        tensors = load_file(str(path / "adapter_model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise LmstackError(f"{path / 'adapter_model.safetensors'}: unreadable ({str(e).splitlines()[0]})") from e
    adapted = method.apply(model, tokenizer)
    method.load_tensors(adapted, tensors, str(path))
    return adapted.eval()


def load_adapted(model: str | Path, adapter: str | Path | None = None, device: str = "cpu",
                 dtype: torch.dtype | None = None, load: Callable[..., nn.Module] = load_causal_lm
                 ) -> tuple[nn.Module, Tokenizer]:
    """A base model directory, with an adapter directory applied when given, and the tokenizer to use (the
    adapter's when it carries one, else the base model's). ``load`` reads the base: by default a causal LM
    (what decodes); ``lmstack.model.hf.load_model`` takes any family."""
    base = load(model, device=device, dtype=dtype)
    tokenizer_dir = Path(adapter) if adapter and (Path(adapter) / "tokenizer.json").is_file() else Path(model)
    tokenizer = Tokenizer.load(tokenizer_dir)
    if adapter is None:
        return base.eval(), tokenizer
    return load_adapter(base, adapter, tokenizer), tokenizer


def _name(method) -> str:
    return next(name for name, cls in METHODS.items() if isinstance(method, cls))
