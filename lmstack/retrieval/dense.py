"""Dense retrieval: passage vectors from a dual encoder in a FAISS inner-product index.

The encoder returns L2-normalised vectors, so inner product is cosine similarity. Three index kinds:
``flat`` (exact, brute force: the default, right up to a few hundred thousand passages), ``ivf`` (k-means
cells, searching ``nprobe`` of them; Jégou et al. 2011) and ``hnsw`` (a navigable small-world graph;
Malkov & Yashunin 2018). The last two trade a little recall for speed on large corpora.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Protocol

import faiss
import numpy as np

from lmstack.errors import LmstackError

Kind = Literal["flat", "ivf", "hnsw"]
KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw")


class Encoder(Protocol):
    """What the index needs of ``lmstack.retrieval.dual_encoder.DualEncoder``."""

    fingerprint: str

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray: ...


def encode(encoder: Encoder, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
    """Encode in batches (with the encoder's progress bar); check the result is one float32 row per text."""
    vectors = np.ascontiguousarray(encoder.encode(texts, batch_size=batch_size, show_progress=show_progress),
                                   dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise LmstackError(f"the encoder returned an array of shape {vectors.shape} for {len(texts)} texts")
    return vectors


class DenseIndex:
    """A FAISS index over passage vectors. Positions are passage numbers (0..N-1)."""

    def __init__(self, index: faiss.Index):
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, kind: Kind = "flat", nprobe: int = 16, hnsw_m: int = 32,
              ef_search: int = 128, seed: int = 0) -> DenseIndex:
        if kind not in KINDS:
            raise LmstackError(f"dense index kind {kind!r} is not one of {', '.join(KINDS)}")
        n, dim = vectors.shape
        if n == 0:
            raise LmstackError("no passages to index")
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = ef_search
        else:
            # About 4 sqrt(N) cells, with at least 39 training points each (FAISS's rule of thumb).
            nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(vectors)
            index.nprobe = min(nprobe, nlist)
        index.add(vectors)
        return cls(index)

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def size(self) -> int:
        return self.index.ntotal

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top ``k`` (position, inner product) per query vector, best first."""
        if vectors.shape[1] != self.dim:
            raise LmstackError(f"query vectors have dimension {vectors.shape[1]}, the index {self.dim}")
        if k < 1 or len(vectors) == 0:
            return [[] for _ in vectors]
        scores, positions = self.index.search(vectors, min(k, self.size))
        # IVF and HNSW pad with position -1 when they find fewer than k.
        return [[(int(p), float(s)) for p, s in zip(ps, ss) if p >= 0] for ps, ss in zip(positions, scores)]

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        """Open a saved index; a missing, truncated or corrupt file is an error naming it (rebuild the index)."""
        if not path.is_file():
            raise LmstackError(f"{path}: the FAISS index file is missing; rebuild the index with `lmstack index`")
        try:
            return cls(faiss.read_index(str(path)))
        except RuntimeError as e:
            reason = str(e).strip().splitlines()[-1].split("failed: ")[-1]
            raise LmstackError(f"{path}: truncated or corrupt ({reason}); rebuild the index with "
                               "`lmstack index`") from e
