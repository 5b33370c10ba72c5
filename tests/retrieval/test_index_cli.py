"""`lmstack index` / `lmstack search` / `lmstack ir-eval` end to end, through ``lmstack.cli.main``.

The dual encoder and cross-encoder are stand-ins with the real ones' methods: hashed bag-of-words vectors,
and a reranker whose preference is easy to see.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from lmstack import cli
from lmstack.errors import LmstackError
from lmstack.retrieval import index as index_module
from lmstack.retrieval.index import Retriever

FACTS = {
    "mars.txt": "Mars is the fourth planet from the Sun. Its red colour comes from iron oxide dust.",
    "venus.txt": "Venus is the hottest planet, wrapped in thick clouds of sulfuric acid.",
    "notes/ocean.md": "# Oceans\n\nThe Pacific is the largest and deepest ocean on Earth.",
    "notes/tea.md": "Green tea is made from unoxidised leaves of the tea plant.",
}
QUERIES = {"q-mars": "why is mars red", "q-ocean": "deepest ocean", "q-tea": "how is green tea made"}
GOLD = {"q-mars": "mars.txt#0", "q-ocean": "notes/ocean.md#0", "q-tea": "notes/tea.md#0"}


class HashEncoder:
    """Hashed bag of words, L2-normalised: texts sharing words have a positive inner product."""

    def __init__(self, dim: int = 256, salt: str = ""):
        self.dim, self.salt = dim, salt
        self.fingerprint = f"hash-{dim}{salt}"
        self.calls = 0

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, zlib.crc32((self.salt + word).encode()) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class ShortestFirst:
    """A cross-encoder stand-in that prefers short passages, whatever the query."""

    fingerprint = "shortest"

    def score(self, query: str, texts: list[str]) -> list[float]:
        return [-float(len(t)) for t in texts]


@pytest.fixture(autouse=True)
def stand_ins(monkeypatch):
    """The hashing encoder and the shortest-first reranker in place of trained models."""
    monkeypatch.setattr(index_module, "load_dense_encoder", lambda path: HashEncoder())
    monkeypatch.setattr(index_module, "load_reranker", lambda path: ShortestFirst())


def run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    """(exit code, the --json object, stderr)."""
    code = 0
    try:
        cli.main([*map(str, argv), "--json"])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


@pytest.fixture
def docs(tmp_path) -> Path:
    for name, text in FACTS.items():
        (tmp_path / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / name).write_text(text, encoding="utf-8")
    return tmp_path / "docs"


@pytest.fixture
def queries(tmp_path) -> Path:
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps({"id": q, "text": t}) + "\n" for q, t in QUERIES.items()), encoding="utf-8")
    return path


def test_bm25_index_search_and_ir_eval(capsys, tmp_path, docs, queries):
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": 7, "text": "Jupiter is the largest planet."}) + "\n", encoding="utf-8")
    code, built, _ = run(capsys, "index", docs, extra, "--out", tmp_path / "idx")
    assert code == 0 and built["passages"] == 5 and built["method"] == "bm25"
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["analyzer"]["settings"]["han"] == "jieba-search" and manifest["bm25"]["variant"] == "lucene"

    code, result, _ = run(capsys, "search", tmp_path / "idx", "--query", "largest planet", "--k", "2")
    assert code == 0 and list(result) == ["query"] and len(result["query"]) == 2
    assert result["query"][0]["id"] == "7" and result["query"][0]["score"] > result["query"][1]["score"]

    run_file = tmp_path / "run.json"
    code, result, _ = run(capsys, "search", tmp_path / "idx", "--queries", queries, "--out", run_file)
    assert code == 0 and {q: hits[0]["id"] for q, hits in result.items()} == GOLD
    assert json.loads(run_file.read_text()) == result

    qrels = tmp_path / "qrels.txt"
    qrels.write_text("".join(f"{q} 0 {d} 1\n" for q, d in GOLD.items()), encoding="utf-8")
    code, scores, _ = run(capsys, "ir-eval", "--run", run_file, "--qrels", qrels, "--k", "1")
    assert code == 0 and scores["queries"] == 3
    assert scores["recall@1"] == scores["mrr@1"] == scores["ndcg@1"] == scores["map"] == 1.0


def test_retriever_api_gives_ids_scores_and_texts(tmp_path, docs):
    cli.main(["index", str(docs), "--out", str(tmp_path / "idx")])
    retriever = Retriever.load(tmp_path / "idx")
    (best, score), *_ = retriever.search("What colour is Mars?", k=3)
    assert best == "mars.txt#0" and score > 0
    assert retriever.text(best) == FACTS["mars.txt"]
    with pytest.raises(LmstackError, match="no passage with id 'nope'"):
        retriever.text("nope")


def test_dense_hybrid_and_rerank(capsys, tmp_path, docs, queries):
    code, built, _ = run(capsys, "index", docs, "--out", tmp_path / "idx", "--method", "hybrid",
                         "--encoder", tmp_path / "enc", "--dense-index", "hnsw")
    assert code == 0 and built["passages"] == 4
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["dense"]["fingerprint"] == "hash-256" and manifest["dense"]["index"] == "hnsw"
    for method in ("bm25", "dense", "hybrid"):
        code, result, _ = run(capsys, "search", tmp_path / "idx", "--queries", queries, "--method", method)
        assert code == 0 and {q: hits[0]["id"] for q, hits in result.items()} == GOLD, method
    code, hybrid, _ = run(capsys, "search", tmp_path / "idx", "--query", "planet", "--k", "4")
    assert hybrid["query"][0]["score"] == pytest.approx(2 / 61)  # first in both rankings
    code, reranked, _ = run(capsys, "search", tmp_path / "idx", "--query", "planet", "--k", "4", "--rerank", "ce")
    lengths = [len(Retriever.load(tmp_path / "idx").text(h["id"])) for h in reranked["query"]]
    assert lengths == sorted(lengths) and {h["id"] for h in reranked["query"]} == {h["id"] for h in hybrid["query"]}


def test_dense_only_index_refuses_bm25_and_needs_an_encoder(capsys, tmp_path, docs):
    code, _, err = run(capsys, "index", docs, "--out", tmp_path / "idx", "--method", "dense")
    assert code == 2 and err.strip() == ("lmstack index: error: --method dense needs --encoder DIR "
                                         "(a dual-encoder directory)")
    assert run(capsys, "index", docs, "--out", tmp_path / "idx", "--method", "dense", "--encoder", "e")[0] == 0
    code, _, err = run(capsys, "search", tmp_path / "idx", "--query", "mars", "--method", "bm25")
    assert code == 2 and "a dense index cannot search by bm25" in err


def test_an_index_refuses_another_encoder_or_analyzer(capsys, tmp_path, docs, monkeypatch):
    run(capsys, "index", docs, "--out", tmp_path / "idx", "--method", "hybrid", "--encoder", "e")
    monkeypatch.setattr(index_module, "load_dense_encoder", lambda path: HashEncoder(salt="v2"))
    code, _, err = run(capsys, "search", tmp_path / "idx", "--query", "mars", "--encoder", "other")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "built with encoder hash-256" in err and "this encoder is hash-256v2" in err
    assert run(capsys, "search", tmp_path / "idx", "--query", "mars", "--method", "bm25")[0] == 0  # BM25 needs none

    manifest_path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["analyzer"]["versions"]["jieba"] = "0.39"  # as if built where jieba segmented differently
    manifest_path.write_text(json.dumps(manifest))
    code, _, err = run(capsys, "search", tmp_path / "idx", "--query", "mars", "--method", "bm25")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "jieba=0.39" in err and "rebuild the index" in err

    from lmstack.retrieval.text import Analyzer

    run(capsys, "index", docs, "--out", tmp_path / "idx2")
    with pytest.raises(LmstackError, match="the analyzer given gives"):
        Retriever.load(tmp_path / "idx2", analyzer=Analyzer(stemmer="none"))


def test_bad_queries(capsys, tmp_path, docs):
    run(capsys, "index", docs, "--out", tmp_path / "idx")
    code, result, err = run(capsys, "search", tmp_path / "idx", "--query", "the of and")
    assert code == 0 and result == {"query": []}
    assert "warning: query query has no terms after analysis (only stop words?): an empty ranking" in err
    code, _, err = run(capsys, "search", tmp_path / "idx", "--query", "  ")
    assert code == 2 and "--query is empty" in err
    code, _, err = run(capsys, "search", tmp_path / "idx")
    assert code == 2 and "give one of --query TEXT or --queries FILE.jsonl" in err
    batch = tmp_path / "batch.jsonl"  # one bad query does not sink the batch
    batch.write_text('{"id": "a", "text": "mars"}\n{"id": "b", "text": ""}\n{"id": "c", "text": "the"}\n',
                     encoding="utf-8")
    code, result, err = run(capsys, "search", tmp_path / "idx", "--queries", batch)
    assert code == 0 and result["a"][0]["id"] == "mars.txt#0" and result["b"] == result["c"] == []
    assert "1 empty query (b): empty rankings" in err and "query c has no terms after analysis" in err
    batch.write_text('{"id": "a", "text": "mars"}\n{"id": "a", "text": "venus"}\n', encoding="utf-8")
    code, _, err = run(capsys, "search", tmp_path / "idx", "--queries", batch)
    assert code == 2 and f"{batch}:2: duplicate query id 'a' (first at {batch}:1)" in err
    code, _, err = run(capsys, "search", tmp_path / "nothing", "--query", "mars")
    assert code == 2 and "not an lmstack index (no manifest.json)" in err


def test_bad_documents_are_named_and_nothing_is_written(capsys, tmp_path, docs):
    (docs / "latin1.txt").write_bytes("café".encode("latin-1"))
    code, _, err = run(capsys, "index", docs, "--out", tmp_path / "idx")
    assert code == 2 and f"{docs / 'latin1.txt'}: not UTF-8" in err and not (tmp_path / "idx").exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("\n\n", encoding="utf-8")
    code, _, err = run(capsys, "index", tmp_path / "empty", "--out", tmp_path / "idx")
    assert code == 2 and "no passages to index" in err


def test_out_must_be_an_index_or_absent(capsys, tmp_path, docs):
    code, _, err = run(capsys, "index", docs, "--out", docs)
    assert code == 2 and "exists and is not an lmstack index; refusing to replace it" in err
    assert (docs / "mars.txt").read_text(encoding="utf-8") == FACTS["mars.txt"]


def test_a_failed_rebuild_leaves_the_old_index_whole(capsys, tmp_path, docs, monkeypatch):
    run(capsys, "index", docs, "--out", tmp_path / "idx")
    before = run(capsys, "search", tmp_path / "idx", "--query", "planet")[1]

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(index_module.DenseIndex, "build", crash)
    code, _, _ = run(capsys, "index", docs, "--out", tmp_path / "idx", "--method", "hybrid", "--encoder", "e")
    assert code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "idx"]  # no temp folder left behind
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["method"] == "bm25"
    assert run(capsys, "search", tmp_path / "idx", "--query", "planet")[1] == before


def test_ir_eval_counts_and_warns_about_unknown_ids(capsys, tmp_path, docs):
    run(capsys, "index", docs, "--out", tmp_path / "idx")
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"q-mars": [{"id": "mars.txt#0", "score": 3.0}],
                                    "q-extra": [{"id": "venus.txt#0", "score": 1.0}]}))
    qrels = tmp_path / "qrels"
    qrels.write_text("q-mars 0 mars.txt#0 2\nq-tea 0 notes/tea.md#0 1\nq-tea 0 gone.txt#0 1\n")
    code, scores, err = run(capsys, "ir-eval", "--run", run_file, "--qrels", qrels, "--index", tmp_path / "idx")
    assert code == 0 and scores["queries"] == 2 and scores["recall@10"] == 0.5  # q-tea: no ranking, scored 0
    assert scores["qrels_queries_missing_from_run"] == 1 and scores["run_queries_without_qrels"] == 1
    assert scores["relevant_ids_not_in_index"] == 1
    assert "1 relevant passage ids in the qrels are not in" in err and "1 run queries have no qrels" in err
    qrels.write_text("q-mars 0 mars.txt#0\n")
    code, _, err = run(capsys, "ir-eval", "--run", run_file, "--qrels", qrels)
    assert code == 2 and f"{qrels}:1: expected 'qid 0 docid relevance'" in err
