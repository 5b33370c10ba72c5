"""The per-expert load of a mixture of experts as a PNG: each MoE layer's share of the token-choices every
expert received (``MoE.load``, counted over the real tokens of the training steps), against the uniform 1/E."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lmstack.model.moe import moe_layers
from lmstack.plots import pyplot, save_png


def expert_loads(model: nn.Module) -> torch.Tensor:
    """[L, E]: each MoE layer's per-expert share of its routed choices (rows sum to 1; zeros before any step)."""
    loads = torch.stack([m.load.detach().cpu() for m in moe_layers(model)])
    return loads / loads.sum(dim=1, keepdim=True).clamp(min=1)


def plot_expert_load(model: nn.Module, path: Path, title: str = "") -> Path | None:
    """Grouped bars, one group per expert, one bar per layer; None (nothing written) for a dense model."""
    if not moe_layers(model):
        return None
    loads = expert_loads(model)
    L, E = loads.shape
    fig, ax = pyplot().subplots(figsize=(max(6, E * 0.8), 4))
    width = 0.8 / L
    for layer in range(L):
        ax.bar([e + (layer - (L - 1) / 2) * width for e in range(E)], loads[layer].tolist(), width,
               label=f"layer {layer}")
    ax.axhline(1 / E, color="grey", linestyle="--", label="uniform 1/E")
    peak = float((loads.max(dim=1).values * E).max())
    ax.set_xticks(range(E))
    ax.set_xlabel("expert")
    ax.set_ylabel("share of token-choices")
    ax.set_title(title or f"expert load (worst layer max/mean {peak:.2f})")
    ax.legend(fontsize=7, ncol=min(L, 4))
    ax.grid(alpha=0.3, axis="y")
    save_png(fig, path)
    return path
