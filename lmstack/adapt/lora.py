"""LoRA: low-rank adaptation (Hu et al. 2021, arXiv:2106.09685).

A frozen linear layer W gains a trainable update of rank r: ``y = W x + (alpha / r) * B A dropout(x)``, with A
[r, in] random and B [out, r] zero, so training starts from the base model exactly. After training the update
can be merged into W (``merge``: no extra cost at inference) and taken out again (``unmerge``).

Layers are chosen by their Hugging Face names (``q_proj``, ``v_proj``, ``c_attn``, BERT's ``query``, ... or
``all-linear``), as peft chooses them; the model's family says which layer is which (``linear_slices``). Our
fused q/k/v and gate/up layers carry one (A, B) pair per Hugging Face layer, acting on its rows, so the saved
adapter is exactly peft's layout and loads onto the exported model with peft.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.families import LinearSlice, family_of, linear_slices

PEFT_PREFIX = "base_model.model."


class LoRALinear(nn.Module):
    """``base`` plus one low-rank update per part: rows [start, end) of the output get ``B_k A_k x``."""

    def __init__(self, base: nn.Linear, parts: list[tuple[str, int, int]], r: int, alpha: float, dropout: float):
        super().__init__()
        self.base, self.parts, self.scale = base, parts, alpha / r
        self.lora_A = nn.ModuleDict({k: nn.Linear(base.in_features, r, bias=False) for k, _, _ in parts})
        self.lora_B = nn.ModuleDict({k: nn.Linear(r, end - start, bias=False) for k, start, end in parts})
        self.dropout = nn.Dropout(dropout)
        self.merged = False
        self.disabled = False  # ``adapters_disabled``: the layer is its base (a reference model for free)
        for k, _, _ in parts:  # peft's init: A ~ Kaiming-uniform, B = 0
            nn.init.kaiming_uniform_(self.lora_A[k].weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[k].weight)

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged or self.disabled:
            return y
        h = self.dropout(x)
        for k, start, end in self.parts:
            d = self.lora_B[k](self.lora_A[k](h)) * self.scale
            y = torch.cat([y[..., :start], y[..., start:end] + d, y[..., end:]], dim=-1) if end - start < y.size(-1) \
                else y + d
        return y

    def delta(self, k: str) -> torch.Tensor:
        """The update to rows of ``base.weight`` that part ``k`` makes: (alpha / r) * B A."""
        return (self.lora_B[k].weight @ self.lora_A[k].weight) * self.scale

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            for k, start, end in self.parts:
                self.base.weight[start:end] += self.delta(k).to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            for k, start, end in self.parts:
                self.base.weight[start:end] -= self.delta(k).to(self.base.weight.dtype)
            self.merged = False


@dataclass
class LoRA:
    """LoRA settings; ``targets`` are Hugging Face module names matched as peft does (the full name, or its
    last components, e.g. ``q_proj``), shell-style patterns (``model.layers.[0-3].*``), or ``all-linear``."""
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["all-linear"])

    peft_type = "LORA"

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise LmstackError(f"lora.r must be positive, got {self.r}")

    def select(self, model: nn.Module) -> list[LinearSlice]:
        """The layers ``targets`` names; an entry that names none is an error listing the valid names."""
        slices = linear_slices(model)
        chosen = set()
        for pattern in self.targets:
            hits = {s for s in slices if _matches(s.hf_module, pattern)}
            if not hits:
                names = sorted({s.hf_module.rsplit(".", 1)[-1] for s in slices})
                raise LmstackError(f"lora.targets: {pattern!r} matches no layer; valid names: "
                                   f"{', '.join(names)}, all-linear, or a full name like {slices[0].hf_module}")
            chosen |= hits
        return [s for s in slices if s in chosen]

    def apply(self, model: nn.Module, tokenizer=None) -> nn.Module:
        """Freeze ``model`` and wrap the targeted layers in ``LoRALinear`` (in place; returns ``model``)."""
        model.requires_grad_(False)
        by_module: dict[str, list[tuple[str, int, int]]] = {}
        for s in self.select(model):
            by_module.setdefault(s.module, []).append((_leaf(s.hf_module), s.start, s.end))
        for module, parts in by_module.items():
            parent, name = module.rsplit(".", 1)
            base = model.get_submodule(module)
            setattr(model.get_submodule(parent), name, LoRALinear(base, parts, self.r, self.alpha, self.dropout))
        return model

    def tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The adapter weights under peft's names: ``base_model.model.<hf module>.lora_{A,B}.weight``."""
        out = {}
        for s in self.select(model):
            layer = model.get_submodule(s.module)
            k = _leaf(s.hf_module)
            out[f"{PEFT_PREFIX}{s.hf_module}.lora_A.weight"] = layer.lora_A[k].weight.detach()
            out[f"{PEFT_PREFIX}{s.hf_module}.lora_B.weight"] = layer.lora_B[k].weight.detach()
        return out

    def load_tensors(self, model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
        for s in self.select(model):
            layer, k = model.get_submodule(s.module), _leaf(s.hf_module)
            for ab in ("A", "B"):
                key = f"{PEFT_PREFIX}{s.hf_module}.lora_{ab}.weight"
                target = getattr(layer, f"lora_{ab}")[k].weight
                if key not in tensors or tensors[key].shape != target.shape:
                    raise LmstackError(f"{source}: tensor '{key}' is missing or of another shape")
                with torch.no_grad():
                    target.copy_(tensors[key])

    def peft_config(self, model: nn.Module) -> dict:
        """adapter_config.json as peft writes it for the model's task (a causal LM, an encoder's features);
        targets are the full module names."""
        slices = self.select(model)
        return {"peft_type": self.peft_type, "task_type": family_of(model).peft_task_type, "r": self.r,
                "lora_alpha": self.alpha, "lora_dropout": self.dropout,
                "target_modules": sorted({s.hf_module for s in slices}),
                "fan_in_fan_out": slices[0].transposed, "bias": "none", "modules_to_save": None,
                "init_lora_weights": True, "use_rslora": False, "use_dora": False, "inference_mode": True}

    @classmethod
    def from_peft_config(cls, config: dict) -> LoRA:
        return cls(r=config["r"], alpha=config["lora_alpha"], dropout=config.get("lora_dropout", 0.0),
                   targets=list(config["target_modules"]))


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every ``LoRALinear`` of ``model`` skips its update, so ``model`` computes exactly its
    base: the frozen reference model of DPO / PPO / GRPO without a second copy of the weights (peft's
    ``disable_adapter``). Merged layers cannot be switched off (their update is in the base weight)."""
    layers = lora_layers(model)
    if any(layer.merged for layer in layers):
        raise LmstackError("the LoRA update is merged into the weights; unmerge it before disabling the adapter")
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False


def merge(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight and put the plain linear layers back: a normal model."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            module.merge()
            parent, leaf = name.rsplit(".", 1)
            setattr(model.get_submodule(parent), leaf, module.base)
    return model


def _leaf(hf_module: str) -> str:
    return hf_module.rsplit(".", 1)[-1]


def _matches(hf_module: str, pattern: str) -> bool:
    if pattern == "all-linear":
        return True
    return hf_module == pattern or hf_module.endswith("." + pattern) or fnmatchcase(hf_module, pattern)
