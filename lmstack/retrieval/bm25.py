"""BM25 over analysed passages, scored by ``bm25s`` (sparse, precomputed per-term passage scores).

Robertson & Zaragoza (2009): with term frequency f of t in passage d, n passages of N containing t, and
L = 1 - b + b |d| / avgdl,

    score(q, d) = sum over terms t of q:  idf(t) * tf(f, L)

The variants are those compared by Kamphuis et al. (2020):
``robertson``  idf = ln((N - n + .5) / (n + .5)) (floored at 0),  tf = f / (f + k1 L)
``lucene``     idf = ln(1 + (N - n + .5) / (n + .5)),              tf = f / (f + k1 L)   (the default)
``atire``      idf = ln(N / n),                                    tf = f (k1 + 1) / (f + k1 L)
``bm25l``      idf = ln((N + 1) / (n + .5)),  c = f / L,           tf = (k1 + 1)(c + delta) / (k1 + c + delta)
``bm25+``      idf = ln((N + 1) / n),                              tf = f (k1 + 1) / (f + k1 L) + delta
BM25L and BM25+ (Lv & Zhai 2011) keep long passages from being over-penalised; they also give every passage
a score for a query term it lacks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import bm25s
import numpy as np

from lmstack.errors import LmstackError
from lmstack.retrieval.text import Analyzer

Variant = Literal["robertson", "lucene", "atire", "bm25l", "bm25+"]
VARIANTS: tuple[str, ...] = ("robertson", "lucene", "atire", "bm25l", "bm25+")


class BM25Index:
    """A bm25s model plus the analyzer its terms came from. Positions are passage numbers (0..N-1)."""

    def __init__(self, model: bm25s.BM25, analyzer: Analyzer):
        self.model = model
        self.analyzer = analyzer

    @classmethod
    def build(cls, texts: list[str], analyzer: Analyzer, variant: Variant = "lucene", k1: float = 1.5,
              b: float = 0.75, delta: float = 0.5, show_progress: bool = False) -> BM25Index:
        if variant not in VARIANTS:
            raise LmstackError(f"BM25 variant {variant!r} is not one of {', '.join(VARIANTS)}")
        if not texts:
            raise LmstackError("no passages to index")
        vocab = _Vocabulary()
        ids = [[vocab[t] for t in analyzer.tokens(text)] for text in texts]
        model = bm25s.BM25(k1=k1, b=b, delta=delta, method=variant)
        # bm25s adds an empty term to the vocabulary, which scores no document, for term-less queries.
        model.index((ids, dict(vocab)), show_progress=show_progress)
        return cls(model, analyzer)

    def params(self) -> dict:
        return {"variant": self.model.method, "k1": self.model.k1, "b": self.model.b, "delta": self.model.delta}

    @property
    def size(self) -> int:
        return int(self.model.scores["num_docs"])

    def search(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        """Top ``k`` (position, score) per query, best first (ties: lower position first). Only passages that
        score above one sharing no term with the query are returned, so a query whose terms are all stop words
        or unseen gets none."""
        term_ids = [self.model.get_tokens_ids(self.analyzer.tokens(q)) for q in queries]
        todo = [i for i, ids in enumerate(term_ids) if ids]
        out: list[list[tuple[int, float]]] = [[] for _ in queries]
        if not todo or k < 1:
            return out
        docs, scores = self.model.retrieve([term_ids[i] for i in todo], k=min(k, self.size), show_progress=False)
        absent = self.model.nonoccurrence_array  # bm25l / bm25+: what a passage without the terms scores
        for i, d, s in zip(todo, docs, scores):
            floor = float(absent[term_ids[i]].sum()) if absent is not None else 0.0
            keep = s > floor + 1e-6 * max(1.0, abs(floor))
            out[i] = sorted(zip(d[keep].tolist(), s[keep].tolist()), key=lambda h: (-h[1], h[0]))
        return out

    def save(self, folder: Path) -> None:
        self.model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, analyzer: Analyzer) -> BM25Index:
        """Open a saved index; a missing, truncated or corrupt file is an error naming it (rebuild the index)."""
        if not folder.is_dir():
            raise LmstackError(f"{folder}: the BM25 index folder is missing; rebuild the index with `lmstack index`")
        for array in sorted(folder.glob("*.npy")):
            _check_npy(array)
        try:
            model = bm25s.BM25.load(str(folder), mmap=False, show_progress=False)
        except (ValueError, EOFError, OSError, KeyError, TypeError) as e:  # json errors are ValueErrors
            culprit = next((f for f in sorted(folder.glob("*.json")) if not _is_json(f)), folder)
            raise LmstackError(f"{culprit}: the BM25 index is truncated or corrupt ({str(e).splitlines()[0]}); "
                               "rebuild it with `lmstack index`") from e
        return cls(model, analyzer)


class _Vocabulary(dict):
    """term -> id, numbering terms in order of first sight."""

    def __missing__(self, term: str) -> int:
        self[term] = n = len(self)
        return n


def _check_npy(path: Path) -> None:
    """Refuse a ``.npy`` file whose size is not what its header promises (a copy or write cut short), naming it."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            data_start = f.tell()
    except (ValueError, EOFError, OSError) as e:
        raise LmstackError(f"{path}: not a valid .npy file, truncated or corrupt ({str(e).splitlines()[0]}); "
                           "rebuild the index with `lmstack index`") from e
    if dtype.hasobject:
        return
    expected = data_start + math.prod(shape) * dtype.itemsize
    if size != expected:
        what = "truncated" if size < expected else "corrupt (longer than its header says)"
        raise LmstackError(f"{path}: {what}: {size} bytes, its header promises {expected}; rebuild the index with "
                           "`lmstack index`")


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except (ValueError, OSError):
        return False
    return True
