"""Bottleneck adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP", arXiv:1902.00751).

A small residual MLP is inserted after a frozen sublayer: ``h + up(act(down(h)))`` with ``down`` [d -> m],
``up`` [m -> d] and m << d. ``up`` starts at zero, so the adapted model starts as the base model exactly.
Houlsby et al. place one after the attention and one after the feed-forward sublayer of every block, each
before the residual addition; ``where`` picks either or both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lmstack.errors import LmstackError

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
SUBLAYERS = ("attn", "mlp")


class Bottleneck(nn.Module):
    def __init__(self, dim: int, size: int, activation: str):
        super().__init__()
        self.down, self.act, self.up = nn.Linear(dim, size), ACTIVATIONS[activation](), nn.Linear(size, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class Adapted(nn.Module):
    """A sublayer followed by its adapter; called exactly as the sublayer was."""

    def __init__(self, inner: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.inner, self.adapter = inner, adapter

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.adapter(self.inner(*args, **kwargs))


@dataclass
class Adapter:
    """Bottleneck adapter settings: width ``size``, after which sublayers (``attn``, ``mlp``), which activation."""
    size: int = 32
    where: list[str] = field(default_factory=lambda: ["attn", "mlp"])
    activation: str = "gelu"

    peft_type = "BOTTLENECK"  # lmstack's own: peft has no Houlsby adapter

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise LmstackError(f"adapter.size must be positive, got {self.size}")
        bad = [w for w in self.where if w not in SUBLAYERS] or ([] if self.where else ["(none)"])
        if bad:
            raise LmstackError(f"adapter.where: {bad[0]!r} is not a sublayer; choose from {', '.join(SUBLAYERS)}")
        if self.activation not in ACTIVATIONS:
            raise LmstackError(f"adapter.activation: {self.activation!r}; choose from {', '.join(ACTIVATIONS)}")

    def apply(self, model: nn.Module, tokenizer=None) -> nn.Module:
        model.requires_grad_(False)
        for block in model.blocks:
            for name in self.where:
                setattr(block, name, Adapted(getattr(block, name), Bottleneck(model.config.n_embd, self.size,
                                                                              self.activation)))
        return model

    def tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in model.named_parameters() if ".adapter." in name}

    def load_tensors(self, model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
        own = self.tensors(model)
        if set(own) != set(tensors) or any(own[k].shape != tensors[k].shape for k in own):
            raise LmstackError(f"{source}: adapter tensors do not match this model and adapter config")
        model.load_state_dict(tensors, strict=False)

    def peft_config(self, model: nn.Module) -> dict:
        return {"peft_type": self.peft_type, "task_type": "CAUSAL_LM", "adapter_size": self.size,
                "where": list(self.where), "activation": self.activation}

    @classmethod
    def from_peft_config(cls, config: dict) -> Adapter:
        return cls(size=config["adapter_size"], where=list(config["where"]), activation=config["activation"])
