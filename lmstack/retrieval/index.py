"""The on-disk retrieval index, ``lmstack index`` / ``lmstack search``, and ``Retriever`` for Python callers.

An index is a folder, written whole by ``atomic_dir`` (a crash leaves the previous index, never a torn one)::

    manifest.json    format, method, passage count, inputs and chunking, the analyzer (settings, library
                     versions, fingerprint), BM25 parameters, the encoder (path, fingerprint) and FAISS kind
    passages.jsonl   {"id", "text"} per passage, in position order (ids map positions back; texts feed the
                     reranker and ``Retriever.text``)
    bm25/            the bm25s arrays and vocabulary          (methods bm25, hybrid)
    dense.faiss      the FAISS index of passage vectors       (methods dense, hybrid)

Search is ``retrieve -> fuse -> rerank``: BM25, dense, or both fused by reciprocal rank (``hybrid``); then,
with a cross-encoder, the top ``depth`` candidates are re-scored and re-sorted. An index refuses a query
analysed or encoded differently from its passages (the manifest's fingerprints), since mismatched terms or
vectors return confident nonsense.

Bad queries never stop a batch: an empty query, or one whose words are all stop words (no BM25 terms), gets an
empty ranking and a warning on stderr naming it (under ``hybrid`` a stop-word query keeps its dense ranking);
``ir-eval`` then scores it 0. Only an empty ``--query`` on its own is an error.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal, Protocol

from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, atomic_open, read_json, write_json
from lmstack.retrieval.bm25 import BM25Index, Variant
from lmstack.retrieval.cross_encoder import CrossEncoder
from lmstack.retrieval.dense import DenseIndex, Encoder, Kind, encode
from lmstack.retrieval.documents import INDEX_MANIFEST_FORMAT, Passage, read_corpus, read_passages_jsonl
from lmstack.retrieval.dual_encoder import DualEncoder
from lmstack.retrieval.hybrid import rrf
from lmstack.retrieval.text import Analyzer

Method = Literal["bm25", "dense", "hybrid"]
PARTS = {"bm25": ("bm25",), "dense": ("dense",), "hybrid": ("bm25", "dense")}


class Reranker(Protocol):
    """What search needs of ``lmstack.retrieval.cross_encoder.CrossEncoder``."""

    fingerprint: str

    def score(self, query: str, texts: list[str]) -> list[float]: ...


def load_dense_encoder(path: str | Path) -> Encoder:
    """The query/passage encoder saved at ``path`` (a dual-encoder or sentence-transformers folder)."""
    return DualEncoder.load(path)


def load_reranker(path: str | Path) -> Reranker:
    """The cross-encoder saved at ``path`` (a one-label BertForSequenceClassification folder)."""
    return CrossEncoder.load(path)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def index(
    docs: list[Path],
    *,
    out: Path,
    method: Method = "bm25",
    encoder: str | None = None,
    variant: Variant = "lucene",
    k1: float = 1.5,
    b: float = 0.75,
    delta: float = 0.5,
    stopwords: Literal["none", "en", "zh", "en+zh"] = "en+zh",
    stemmer: str = "english",
    han: Literal["jieba", "jieba-search", "char"] = "jieba-search",
    dense_index: Kind = "flat",
    chunk_size: int = 1000,
    chunk_overlap: int = 200,
    batch_size: int = 64,
) -> dict:
    """Build a retrieval index over passages (.jsonl with id and text) and folders of .txt/.md/.jsonl files.

    Args:
        docs: .jsonl files of {"id", "text"} passages, .txt/.md files, or folders of them
        out: index folder to write (replaced atomically; an existing folder must be an lmstack index)
        method: bm25, dense (needs --encoder) or hybrid (both, fused by reciprocal rank at search time)
        encoder: dual-encoder directory for dense and hybrid indexes
        variant: BM25 variant: robertson, lucene, atire, bm25l or bm25+
        k1: BM25 term-frequency saturation
        b: BM25 length normalisation
        delta: BM25L / BM25+ term-frequency floor
        stopwords: stop-word lists to drop: none, en, zh or en+zh
        stemmer: PyStemmer language for non-Han words, or none
        han: Chinese segmentation: jieba, jieba-search (also the words inside long words) or char
        dense_index: FAISS index: flat (exact), ivf or hnsw (approximate, for large corpora)
        chunk_size: characters per chunk of a .txt/.md document
        chunk_overlap: characters shared by consecutive chunks
        batch_size: passages per encoder batch
    """
    start = time.perf_counter()
    out = Path(out)
    _check_replaceable(out)
    if method != "bm25" and encoder is None:
        raise LmstackError(f"--method {method} needs --encoder DIR (a dual-encoder directory)")
    if method == "bm25" and encoder is not None:
        log("index: warning: --encoder is ignored by --method bm25")
    analyzer = Analyzer(stopwords=stopwords, stemmer=stemmer, han=han)
    corpus = read_corpus(docs, chunk_size, chunk_overlap)
    for name in corpus.skipped_empty[:5]:
        log(f"index: warning: {name}: no text, skipped")
    log(f"index: {len(corpus.passages)} passages from {corpus.files} file(s)")
    manifest = build(corpus.passages, out, method=method, analyzer=analyzer,
                     encoder=load_dense_encoder(encoder) if encoder else None, encoder_path=encoder,
                     bm25={"variant": variant, "k1": k1, "b": b, "delta": delta},
                     dense_index=dense_index, batch_size=batch_size, show_progress=sys.stderr.isatty(),
                     extra={"inputs": [str(d) for d in docs],
                            "chunking": {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap}})
    seconds = time.perf_counter() - start
    return {"out": str(out), "method": method, "passages": manifest["passages"], "files": corpus.files,
            "skipped_empty": len(corpus.skipped_empty), "analyzer": manifest["analyzer"]["fingerprint"],
            "seconds": round(seconds, 2), "passages_per_second": round(manifest["passages"] / seconds, 1)}


def build(passages: list[Passage], out: Path, *, method: Method = "bm25", analyzer: Analyzer | None = None,
          encoder: Encoder | None = None, encoder_path: str | Path | None = None, bm25: dict | None = None,
          dense_index: Kind = "flat", batch_size: int = 64, show_progress: bool = False,
          extra: dict | None = None) -> dict:
    """Write an index of ``passages`` to ``out`` (atomically) and return its manifest. ``bm25`` holds
    ``BM25Index.build`` keywords (variant, k1, b, delta)."""
    if method not in PARTS:
        raise LmstackError(f"method {method!r} is not one of {', '.join(PARTS)}")
    if not passages:
        raise LmstackError("no passages to index")
    if "dense" in PARTS[method] and encoder is None:
        raise LmstackError(f"method {method} needs an encoder")
    _check_replaceable(Path(out))
    analyzer = analyzer or Analyzer()
    texts = [p.text for p in passages]
    manifest: dict = {"format": INDEX_MANIFEST_FORMAT, "method": method, "passages": len(passages),
                      **(extra or {}), "analyzer": analyzer.describe()}
    with atomic_dir(out) as tmp:
        with atomic_open(tmp / "passages.jsonl") as f:
            for p in passages:
                f.write(json.dumps({"id": p.id, "text": p.text}, ensure_ascii=False) + "\n")
        if "bm25" in PARTS[method]:
            model = BM25Index.build(texts, analyzer, show_progress=show_progress, **(bm25 or {}))
            model.save(tmp / "bm25")
            manifest["bm25"] = model.params()
        if "dense" in PARTS[method]:
            vectors = encode(encoder, texts, batch_size, show_progress)
            DenseIndex.build(vectors, dense_index).save(tmp / "dense.faiss")
            manifest["dense"] = {"encoder": str(Path(encoder_path).resolve()) if encoder_path else None,
                                 "fingerprint": encoder.fingerprint, "index": dense_index, "dim": vectors.shape[1]}
        write_json(tmp / "manifest.json", manifest)
    return manifest


def _check_replaceable(out: Path) -> None:
    """Only an lmstack index (or nothing) may be replaced: ``--out`` pointing at a data folder loses nothing."""
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not _is_index(out)):
        raise LmstackError(f"--out {out}: exists and is not an lmstack index; refusing to replace it")


def _is_index(path: Path) -> bool:
    try:
        return read_json(path / "manifest.json").get("format") == INDEX_MANIFEST_FORMAT
    except (LmstackError, AttributeError):
        return False


class Retriever:
    """A loaded index: ``search(query, k)`` -> [(passage id, score)], best first; ``text(id)`` -> passage."""

    def __init__(self, path: Path, manifest: dict, passages: list[Passage], bm25: BM25Index | None,
                 dense: DenseIndex | None, encoder: Encoder | str | Path | None = None,
                 reranker: Reranker | None = None, depth: int = 50):
        self.path, self.manifest, self.passages = path, manifest, passages
        self.bm25, self.dense, self.reranker, self.depth = bm25, dense, reranker, depth
        self._encoder, self._encoder_checked = encoder, False
        self._position = {p.id: i for i, p in enumerate(passages)}

    @classmethod
    def load(cls, path: str | Path, *, analyzer: Analyzer | None = None, encoder: Encoder | str | Path | None = None,
             reranker: Reranker | str | Path | None = None, depth: int = 50) -> Retriever:
        """Open an index. ``analyzer``/``encoder`` (default: the index's own) must match those it was built with;
        ``reranker`` (a cross-encoder or its directory) re-scores the top ``depth`` candidates."""
        path = Path(path)
        if not (path / "manifest.json").is_file():
            raise LmstackError(f"{path}: not an lmstack index (no manifest.json)")
        manifest = read_json(path / "manifest.json")
        if manifest.get("format") != INDEX_MANIFEST_FORMAT:
            raise LmstackError(f"{path}: index format {manifest.get('format')!r}, expected {INDEX_MANIFEST_FORMAT}")
        bm25 = None
        if "bm25" in manifest:
            analyzer = _check_analyzer(path, manifest["analyzer"], analyzer)
            bm25 = BM25Index.load(path / "bm25", analyzer)
        dense = DenseIndex.load(path / "dense.faiss") if "dense" in manifest else None
        passages = [Passage(pid, text) for _, pid, text in read_passages_jsonl(path / "passages.jsonl")]
        _check_sizes(path, manifest, passages, bm25, dense)
        if isinstance(reranker, (str, Path)):
            reranker = load_reranker(reranker)
        return cls(path, manifest, passages, bm25, dense, encoder, reranker, depth)

    @property
    def method(self) -> str:
        return self.manifest["method"]

    @property
    def encoder(self) -> Encoder:
        """The query encoder, loaded and checked against the index's fingerprint on first use (a fingerprint
        hashes every weight: once is enough)."""
        if self._encoder_checked:
            return self._encoder
        if self.dense is None:
            raise LmstackError(f"{self.path}: a {self.method} index has no dense part")
        info = self.manifest["dense"]
        if self._encoder is None or isinstance(self._encoder, (str, Path)):
            where = self._encoder or info["encoder"]
            if where is None:
                raise LmstackError(f"{self.path}: the index does not record its encoder; pass --encoder DIR")
            self._encoder = load_dense_encoder(where)
        if (fingerprint := self._encoder.fingerprint) != info["fingerprint"]:
            raise LmstackError(f"{self.path}: built with encoder {info['fingerprint']} ({info['encoder']}), "
                               f"but this encoder is {fingerprint}; use that encoder or rebuild")
        self._encoder_checked = True
        return self._encoder

    def text(self, passage_id: str) -> str:
        if passage_id not in self._position:
            raise LmstackError(f"{self.path}: no passage with id {passage_id!r}")
        return self.passages[self._position[passage_id]].text

    def search(self, query: str, k: int = 10, method: Method | None = None) -> list[tuple[str, float]]:
        return self.search_many([query], k, method)[0]

    def search_many(self, queries: list[str], k: int = 10, method: Method | None = None,
                    names: list[str] | None = None) -> list[list[tuple[str, float]]]:
        """Rankings of (passage id, score) for each query; ``names`` label the queries in warnings."""
        method = method or self.method
        if method not in PARTS or any(getattr(self, part) is None for part in PARTS[method]):
            raise LmstackError(f"{self.path}: a {self.method} index cannot search by {method}")
        names = names or [f"#{i}" for i in range(len(queries))]
        live = [i for i, q in enumerate(queries) if q.strip()]
        if len(live) < len(queries):
            blank = [names[i] for i, q in enumerate(queries) if not q.strip()]
            log(f"search: warning: {len(blank)} empty quer{'y' if len(blank) == 1 else 'ies'} "
                f"({', '.join(blank[:5])}{', ...' if len(blank) > 5 else ''}): empty rankings")
        results: list[list[tuple[str, float]]] = [[] for _ in queries]
        found = self._search([queries[i] for i in live], [names[i] for i in live], k, method) if live else []
        for i, hits in zip(live, found):
            results[i] = hits
        return results

    def _search(self, queries: list[str], names: list[str], k: int, method: str) -> list[list[tuple[str, float]]]:
        depth = max(k, self.depth) if self.reranker or method == "hybrid" else k
        rankings = []
        if "bm25" in PARTS[method]:
            bm25 = self.bm25.search(queries, depth)
            for name, q, hits in zip(names, queries, bm25):
                if not hits and not self.bm25.analyzer.tokens(q):
                    rest = "the dense ranking alone" if method == "hybrid" else "an empty ranking"
                    log(f"search: warning: query {name} has no terms after analysis (only stop words?): {rest}")
            rankings.append(bm25)
        if "dense" in PARTS[method]:
            rankings.append(self.dense.search(encode(self.encoder, queries), depth))
        fused = rankings[0] if len(rankings) == 1 else [rrf(pair, top=depth) for pair in zip(*rankings)]
        results = []
        for query, hits in zip(queries, fused):
            if self.reranker is not None and hits:
                scores = self.reranker.score(query, [self.passages[p].text for p, _ in hits])
                hits = sorted(zip((p for p, _ in hits), map(float, scores)), key=lambda h: -h[1])
            results.append([(self.passages[p].id, score) for p, score in hits[:k]])
        return results


def _check_sizes(path: Path, manifest: dict, passages: list[Passage], bm25: BM25Index | None,
                 dense: DenseIndex | None) -> None:
    """Every part of an index holds the manifest's passage count: a part cut short (or from another build) is
    refused, naming it, rather than returning wrong passages."""
    want = manifest.get("passages")
    parts = [("passages.jsonl", len(passages)), ("bm25", bm25.size if bm25 else None),
             ("dense.faiss", dense.size if dense else None)]
    for name, size in parts:
        if size is not None and size != want:
            raise LmstackError(f"{path / name}: holds {size} passages, the manifest {want}; the index is truncated "
                               "or corrupt: rebuild it with `lmstack index`")


def _check_analyzer(path: Path, stored: dict, given: Analyzer | None) -> Analyzer:
    """The analyzer the index was built with, refusing one that would produce other terms."""
    own = Analyzer.from_settings(stored["settings"])
    for candidate, what in ((own, "this environment"), (given, "the analyzer given")):
        now = candidate.describe() if candidate is not None else stored
        if (now["settings"], now["versions"]) != (stored["settings"], stored["versions"]):
            raise LmstackError(
                f"{path}: built with analyzer {stored['fingerprint']} ({_summary(stored)}), but {what} gives "
                f"{now['fingerprint']} ({_summary(now)}); rebuild the index with lmstack index")
    return own


def _summary(described: dict) -> str:
    parts = {**described["settings"], **described["versions"]}
    return ", ".join(f"{k}={v}" for k, v in parts.items())


def search(
    idx: Path,
    *,
    query: str | None = None,
    queries: Path | None = None,
    k: int = 10,
    method: Method | None = None,
    rerank: str | None = None,
    depth: int = 50,
    encoder: str | None = None,
    out: Path | None = None,
) -> dict:
    """Search an index; the result maps each query id to its ranking of {"id", "score"}.

    Args:
        idx: index folder written by lmstack index
        query: one query (its id in the output: "query")
        queries: .jsonl file of {"id", "text"} queries
        k: passages per query
        method: bm25, dense or hybrid; unset: the index's own (a hybrid index can search by either part)
        rerank: cross-encoder directory: re-score the top --depth candidates
        depth: candidates per query for fusion and reranking
        encoder: dual-encoder directory for dense queries; unset: the one the index was built with
        out: also write the result to this JSON file (the RUN file lmstack ir-eval reads)
    """
    if (query is None) == (queries is None):
        raise LmstackError("give one of --query TEXT or --queries FILE.jsonl")
    if k < 1 or depth < 1:
        raise LmstackError(f"--k and --depth must be positive, got {k} and {depth}")
    if query is not None:
        if not query.strip():
            raise LmstackError("--query is empty")
        names, texts = ["query"], [query]
    else:
        records = list(read_passages_jsonl(Path(queries)))
        seen: dict[str, str] = {}
        for where, qid, _ in records:
            if qid in seen:
                raise LmstackError(f"{where}: duplicate query id {qid!r} (first at {seen[qid]})")
            seen[qid] = where
        if not records:
            raise LmstackError(f"{queries}: no queries in the file")
        names, texts = [qid for _, qid, _ in records], [text for _, _, text in records]
    start = time.perf_counter()
    retriever = Retriever.load(idx, encoder=encoder, reranker=rerank, depth=depth)
    rankings = retriever.search_many(texts, k, method, names)
    log(f"search: {len(texts)} queries in {time.perf_counter() - start:.2f}s")
    result = {name: [{"id": pid, "score": score} for pid, score in hits]
              for name, hits in zip(names, rankings)}
    if out is not None:
        with atomic_open(out) as f:
            json.dump(result, f, ensure_ascii=False)
    return result
