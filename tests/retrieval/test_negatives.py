"""Hard-negative mining: BM25's best passages for a query, never the positive (nor a chunk of it), appended
after any negatives the example already has; ``train-rerank --negatives-from IDX`` trains on them."""

from __future__ import annotations

import json

import pytest

from lmstack.errors import LmstackError
from lmstack.retrieval import commands
from lmstack.retrieval.documents import Passage
from lmstack.retrieval.index import build
from lmstack.retrieval.negatives import mine_negatives
from lmstack.text.tokenizer import train_char

PASSAGES = {
    "p1": "Mars is the red planet, red from iron oxide.",
    "p2": "Venus is a hot planet with thick clouds.",
    "p3": "Jupiter is the largest planet, a gas giant.",
    "p4": "Green tea is brewed from unoxidised tea leaves.",
}


@pytest.fixture()
def bm25_index(tmp_path):
    build([Passage(k, v) for k, v in PASSAGES.items()], tmp_path / "idx")
    return tmp_path / "idx"


def test_mined_negatives_rank_order_and_skip_the_positive(bm25_index):
    examples = [("which planet is red", PASSAGES["p1"], []),
                ("which planet is the largest", "Jupiter is the largest planet", [PASSAGES["p2"]])]
    mined = mine_negatives(examples, bm25_index, count=2, depth=4)
    q, pos, negs = mined[0]
    assert (q, pos) == examples[0][:2] and len(negs) == 2
    assert PASSAGES["p1"] not in negs and PASSAGES["p4"] not in negs  # the positive; tea shares no term
    # p3 contains the second positive (a chunk of it), so it is skipped; the given negative stays first
    assert mined[1][2][0] == PASSAGES["p2"] and PASSAGES["p3"] not in mined[1][2]
    assert len(mined[1][2]) == len(set(mined[1][2]))
    with pytest.raises(LmstackError, match="count <= depth"):
        mine_negatives(examples, bm25_index, count=5, depth=4)


def test_train_rerank_mines_from_an_index(bm25_index, tmp_path, monkeypatch):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"query": "which planet is red", "positive": PASSAGES["p1"]}) + "\n")
    train_char(["".join(PASSAGES.values()) + "which"]).save(tmp_path / "tok")
    seen = []
    real = commands.train_cross_encoder
    monkeypatch.setattr(commands, "train_cross_encoder",
                        lambda examples, *a, **k: seen.append(examples) or real(examples, *a, **k))
    commands.train_rerank(data, tmp_path / "rerank", encoder="bert-tiny", tokenizer=tmp_path / "tok",
                          negatives_from=bm25_index, mined_negatives=2, device="cpu")
    assert len(seen[0][0][2]) == 2 and PASSAGES["p1"] not in seen[0][0][2]
