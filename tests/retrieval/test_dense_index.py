"""The FAISS index: exact search equals brute force, IVF/HNSW find the near neighbours, save/load is lossless."""

from __future__ import annotations

import numpy as np
import pytest

from lmstack.errors import LmstackError
from lmstack.retrieval.dense import DenseIndex, encode


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_search_is_exact_inner_product():
    rng = np.random.default_rng(0)
    passages, queries = _unit(rng, 300, 16), _unit(rng, 5, 16)
    hits = DenseIndex.build(passages).search(queries, 7)
    sims = queries @ passages.T
    for q, ranking in enumerate(hits):
        assert [p for p, _ in ranking] == list(np.argsort(-sims[q])[:7])
        assert [s for _, s in ranking] == pytest.approx(np.sort(sims[q])[::-1][:7], abs=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_find_the_true_neighbours_and_survive_save_load(kind, tmp_path):
    rng = np.random.default_rng(1)
    passages = _unit(rng, 2000, 32)
    queries = passages[:50] + 0.05 * _unit(rng, 50, 32)  # each query sits next to one passage
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = DenseIndex.build(passages, kind)
    hits = index.search(queries, 10)
    assert sum(h[0][0] == i for i, h in enumerate(hits)) >= 48
    index.save(tmp_path / "dense.faiss")
    assert DenseIndex.load(tmp_path / "dense.faiss").search(queries, 10) == hits  # nprobe / efSearch kept


def test_k_beyond_the_corpus_and_bad_shapes():
    rng = np.random.default_rng(2)
    index = DenseIndex.build(_unit(rng, 3, 8), "ivf")  # 3 passages: a single IVF cell
    assert [len(h) for h in index.search(_unit(rng, 2, 8), 10)] == [3, 3]
    with pytest.raises(LmstackError, match="dimension 4, the index 8"):
        index.search(_unit(rng, 1, 4), 1)
    with pytest.raises(LmstackError, match="'annoy' is not one of flat, ivf, hnsw"):
        DenseIndex.build(_unit(rng, 3, 8), "annoy")


def test_encode_checks_the_encoder_output():
    class Broken:
        fingerprint = "broken"

        def encode(self, texts, batch_size=64, show_progress=False):
            return np.zeros((len(texts) - 1, 4))

    with pytest.raises(LmstackError, match=r"shape \(1, 4\) for 2 texts"):
        encode(Broken(), ["a", "b"])
