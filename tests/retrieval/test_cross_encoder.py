"""The cross-encoder: listwise training ranks positives first, also for pairs it never saw; the saved folder
is a one-label BertForSequenceClassification that transformers scores identically."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import transformers

from lmstack.errors import LmstackError
from lmstack.model import preset
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.heads import EncoderForSequenceClassification
from lmstack.retrieval.commands import train_rerank
from lmstack.retrieval.cross_encoder import CrossEncoder, listwise_loss
from lmstack.retrieval.dual_encoder import DualEncoder
from lmstack.retrieval.rerank_training import in_batch_negatives, train_cross_encoder
from lmstack.retrieval.starting_points import fresh_encoder
from lmstack.text.tokenizer import train_char

CONFIG = preset("bert-tiny", n_embd=64, n_head=2, n_layer=2, block_size=64)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """A passage is relevant when it names the query's word: a rule the reranker must find in both texts."""
    rnd = random.Random(seed)
    words = ["".join(rnd.choice(LETTERS) for _ in range(5)) for _ in range(n)]
    return [(f"find {w}", f"doc about {w} here") for w in words]


def precision_at_1(model: CrossEncoder, pairs) -> float:
    hits = 0
    for i, (q, p) in enumerate(pairs):
        candidates = [p] + [pairs[(i + k) % len(pairs)][1] for k in (3, 5, 7)]
        hits += int(np.argmax(model.score(q, candidates)) == 0)
    return hits / len(pairs)


@pytest.fixture(scope="module")
def tokenizer():
    return train_char([LETTERS + " ?."])


def test_training_ranks_positives_first(tokenizer, tmp_path):
    train, held_out = _pairs(32, seed=0), _pairs(16, seed=1)
    examples = [(q, p, [train[(i + 1) % len(train)][1]]) for i, (q, p) in enumerate(train)]
    torch.manual_seed(0)
    untrained = CrossEncoder(EncoderForSequenceClassification(fresh_encoder(CONFIG, tokenizer)[0], 1), tokenizer)
    result = train_cross_encoder(examples, tmp_path / "ce", CONFIG, tokenizer, epochs=40, batch_size=8, lr=1e-3)
    trained = CrossEncoder.load(tmp_path / "ce")
    assert precision_at_1(untrained, held_out) <= 0.5
    assert precision_at_1(trained, train) > 0.7 and precision_at_1(trained, held_out) > 0.7
    assert trained.fingerprint == result["fingerprint"] != untrained.fingerprint


def test_transformers_scores_the_saved_folder_identically(tokenizer, tmp_path):
    torch.manual_seed(0)
    ours = CrossEncoder(EncoderForSequenceClassification(fresh_encoder(CONFIG, tokenizer)[0], 1), tokenizer)
    with torch.no_grad():
        ours.model.classifier.weight.normal_()
    ours.save(tmp_path / "ce")
    theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "ce").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "ce")
    texts = ["doc about abc", "a longer passage about something else entirely"]
    batch = hf_tok(["find abc"] * 2, texts, padding=True, return_tensors="pt")
    mine = encode_pairs(tokenizer, ["find abc"] * 2, texts)
    assert all(torch.equal(batch[k], mine[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    with torch.no_grad():
        want = theirs(**batch).logits.squeeze(-1).tolist()
    np.testing.assert_allclose(ours.score("find abc", texts, batch_size=1), want, atol=1e-5)


def test_saved_pair_length_is_kept(tokenizer, tmp_path):
    """A reranker trained on 16-token pairs scores 16-token pairs after loading, in lmstack and transformers."""
    torch.manual_seed(0)
    ours = CrossEncoder(EncoderForSequenceClassification(fresh_encoder(CONFIG, tokenizer)[0], 1), tokenizer, max_len=16)
    ours.save(tmp_path / "ce")
    loaded = CrossEncoder.load(tmp_path / "ce")
    text = "a longer passage about something else entirely"
    assert loaded.max_len == 16
    np.testing.assert_allclose(loaded.score("find abc", [text]), ours.score("find abc", [text]), atol=1e-6)
    hf_ids = transformers.AutoTokenizer.from_pretrained(tmp_path / "ce")("find abc", text, truncation=True)["input_ids"]
    assert hf_ids == encode_pairs(tokenizer, ["find abc"], [text], max_len=16)["input_ids"][0].tolist()


def test_negatives_and_listwise_loss():
    rows = [("q0", "p0", ["n0"]), ("q1", "p1", []), ("q2", "p0", [])]
    assert in_batch_negatives(0, rows, 2) == ["n0", "p1"]  # own first, then others' positives (never its own)
    assert in_batch_negatives(2, rows, 3) == ["p1"]
    logits = torch.tensor([3.0, 0.0, 1.0, 0.0])
    want = (torch.logsumexp(torch.tensor([3.0, 0.0]), 0) - 3 + torch.logsumexp(torch.tensor([1.0, 0.0]), 0) - 1) / 2
    torch.testing.assert_close(listwise_loss(logits, [2, 2]), want)
    torch.testing.assert_close(listwise_loss(logits[:3], [2, 1]), (want * 2 - (torch.logsumexp(
        torch.tensor([1.0, 0.0]), 0) - 1)) / 2)  # a group of one costs nothing


def test_train_rerank_cli_shape(tokenizer, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"query": q, "positive": p}) for q, p in _pairs(6, 0)) + "\n")
    tokenizer.save(tmp_path / "tok")
    first = train_rerank(data, tmp_path / "a", encoder="bert-tiny", tokenizer=tmp_path / "tok", batch_size=3)
    assert first["steps"] == 2
    train_rerank(data, tmp_path / "b", encoder=str(tmp_path / "a"), batch_size=3, lr=1e-9)
    a, b = CrossEncoder.load(tmp_path / "a"), CrossEncoder.load(tmp_path / "b")
    texts = [p for _, p in _pairs(6, 0)]
    np.testing.assert_allclose(a.score("find x", texts), b.score("find x", texts), atol=1e-4)  # continued, same head
    DualEncoder(*fresh_encoder(CONFIG, tokenizer)).save(tmp_path / "dense")
    with pytest.raises(LmstackError, match="holds a BertModel, which has no 'classification' head"):
        CrossEncoder.load(tmp_path / "dense")
    with pytest.raises(LmstackError, match="give a tokenizer"):
        train_rerank(data, tmp_path / "c", encoder="bert-tiny")
