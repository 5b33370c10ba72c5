"""Attention maps as PNG heat maps: one grid of every head per layer, or one head large.

Rows are queries, columns keys; token labels go on the axes when the text is short (``LABELLED`` tokens or fewer),
drawn with an installed Han font where they hold Chinese (``plots.han_fonts``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lmstack.interpret.attention import AttentionRun
from lmstack.interpret.token_pieces import display
from lmstack.plots import han_fonts, pyplot, save_png

LABELLED = 48  # the most tokens whose labels are drawn on the axes


def _labels(run: AttentionRun) -> list[str] | None:
    T = run.shape[2]
    if T > LABELLED:
        return None
    labels = [display(label) for label in run.tokens.labels]
    han_fonts(labels)
    return labels


def _draw(ax, probs: np.ndarray, labels: list[str] | None, title: str, fontsize: float):
    image = ax.imshow(probs, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=fontsize + 2)
    if labels is None:
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ticks = range(len(labels))
        ax.set_xticks(ticks, labels, rotation=90, fontsize=fontsize)
        ax.set_yticks(ticks, labels, fontsize=fontsize)
    return image


def plot_layer(run: AttentionRun, layer: int, path: Path, title: str | None = None) -> Path:
    """Every head of ``layer`` as a grid of heat maps, written to ``path``."""
    plt = pyplot()
    _, H, T = run.shape
    labels = _labels(run)
    cols = math.ceil(math.sqrt(H))
    rows = math.ceil(H / cols)
    side = 4.2 if labels is None else max(4.2, 0.16 * T + 1.5)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows), squeeze=False)
    fontsize = 7 if T <= 24 else 5
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        image = _draw(ax, run.maps[layer, h], labels, f"layer {layer} head {h}", fontsize)
    fig.suptitle(title or f"attention, layer {layer} ({T} tokens; rows: queries, columns: keys)")
    fig.colorbar(image, ax=axes.flat[H - 1], shrink=0.8, label="attention probability")
    save_png(fig, path)
    return path


def plot_head(run: AttentionRun, layer: int, head: int, path: Path, title: str | None = None) -> Path:
    """One head's map, large, written to ``path``."""
    plt = pyplot()
    T = run.shape[2]
    labels = _labels(run)
    side = 6.0 if labels is None else max(6.0, 0.2 * T + 2.0)
    fig, ax = plt.subplots(figsize=(side, side))
    image = _draw(ax, run.maps[layer, head], labels, title or f"layer {layer} head {head}", 8 if T <= 24 else 6)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    fig.colorbar(image, ax=ax, shrink=0.7, label="attention probability")
    save_png(fig, path)
    return path
