"""Figures of a fit: loss against compute with the fitted L(N, D) curve of each model size (D = C / 6N) and
L(C); predicted against actual loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmstack.plots import han_fonts, pyplot, save_png
from lmstack.scaling.laws import ComputeLaw, LossLaw


def plot_loss_vs_compute(n: np.ndarray, c: np.ndarray, loss: np.ndarray, law: LossLaw, compute_law: ComputeLaw | None,
                         path: Path, title: str = "loss vs training compute") -> None:
    plt = pyplot()
    labels = [title, "training compute C = 6ND (FLOPs)", "validation loss (nats/token)"]
    han_fonts(labels)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = np.unique(n)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    grid = np.logspace(np.log10(c.min()) - 0.3, np.log10(c.max()) + 0.5, 200)
    for size, colour in zip(sizes, colours):
        mask = n == size
        ax.scatter(c[mask], loss[mask], color=colour, zorder=3, label=f"N={size:.3g}")
        ax.plot(grid, law.loss(size, grid / (6 * size)), color=colour, lw=1)
    if compute_law is not None:
        ax.plot(grid, compute_law.loss(grid), "k--", lw=1, label="L(C) = a C^b + c")
    ax.set_xscale("log")
    ax.set(title=labels[0], xlabel=labels[1], ylabel=labels[2])
    ax.legend(fontsize=7)
    save_png(fig, path)


def plot_predicted_vs_actual(predicted: np.ndarray, actual: np.ndarray, held_out: np.ndarray, path: Path) -> None:
    plt = pyplot()
    labels = ["L(N, D): predicted vs actual", "actual validation loss", "predicted"]
    han_fonts(labels)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    lo, hi = min(predicted.min(), actual.min()), max(predicted.max(), actual.max())
    ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    ax.scatter(actual[~held_out], predicted[~held_out], label="fitted")
    if held_out.any():
        ax.scatter(actual[held_out], predicted[held_out], marker="*", s=120, label="held out (backtest)")
    ax.set(title=labels[0], xlabel=labels[1], ylabel=labels[2])
    ax.legend(fontsize=8)
    save_png(fig, path)
