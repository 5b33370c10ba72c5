"""Chosen words' vectors in two dimensions: PCA (the top two right singular vectors of the centred matrix), or
t-SNE (van der Maaten & Hinton 2008, scikit-learn's, where installed), drawn as a labelled scatter plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmstack.errors import LmstackError
from lmstack.plots import han_fonts, pyplot, save_png

PROJECTIONS = ("pca", "tsne")


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points [n, 2], explained-variance share of the two axes): X - mean = U S V^T, points = (X - mean) V[:2]^T."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(2, len(s))
    points = np.zeros((len(x), 2))
    points[:, :k] = x @ vt[:k].T
    var = s ** 2
    share = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return points, np.pad(share, (0, 2 - len(share)))


def tsne_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise LmstackError("--method tsne needs scikit-learn (pip install scikit-learn); --method pca needs "
                           "nothing more") from None
    n = len(vectors)
    return TSNE(2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(
        np.asarray(vectors, dtype=np.float64))


def project(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    if method not in PROJECTIONS:
        raise LmstackError(f"--method {method!r}: expected one of {', '.join(PROJECTIONS)}")
    if len(vectors) < (4 if method == "tsne" else 2):
        raise LmstackError(f"a {method} projection needs at least {4 if method == 'tsne' else 2} words, "
                           f"got {len(vectors)}")
    return pca_2d(vectors)[0] if method == "pca" else tsne_2d(vectors, seed)


def plot_projection(points: np.ndarray, words: list[str], path: Path, title: str) -> None:
    """A scatter of ``points`` labelled with ``words`` (Chinese through an installed Han font), as a PNG."""
    han_fonts([*words, title])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(points[:, 0], points[:, 1], s=18, color="tab:blue")
    for (x, y), word in zip(points, words):
        ax.annotate(word, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=9)
    ax.set_title(title)
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    save_png(fig, path)
