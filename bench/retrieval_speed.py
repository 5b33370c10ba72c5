"""BM25 speed: lmstack's index and search against calling ``bm25s`` directly, on a synthetic corpus.

The corpus is ``--passages`` passages of 40-80 words drawn from a Zipf-distributed vocabulary of invented
words (so English stemming and stop words have real work to do: about a third of the draws are English
stop words or inflected forms). Both sides do the same analysis (lower-case, English stop words, Snowball
stemmer, Lucene BM25):

- lmstack: ``BM25Index.build(texts, Analyzer(stopwords="en"))``, and ``Retriever.search_many`` on the saved
  index (analysis, retrieval, and mapping positions to passage ids);
- bm25s: ``bm25s.tokenize(..., stopwords="en", stemmer=...)`` then ``BM25().index`` / ``retrieve``.

Runs alternate between the two in one process (``--repeats`` rounds) and report medians, so both see the
same machine load; the overhead is lmstack's median time over bm25s's, minus one, in wall seconds and in
CPU seconds of this process (steadier on a shared machine: neighbours inflate wall time, not CPU time).

    python bench/retrieval_speed.py --passages 100000 --queries 2000 --repeats 3 --json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from lmstack.cli import emit
from lmstack.retrieval.bm25 import BM25Index
from lmstack.retrieval.documents import Passage
from lmstack.retrieval.index import Retriever, build
from lmstack.retrieval.text import Analyzer

FUNCTION_WORDS = ["the", "of", "and", "a", "to", "in", "is", "was", "for", "on", "with", "as", "by", "at"]
SUFFIXES = ["", "", "", "s", "ed", "ing", "ly", "ness"]


def synthetic_corpus(n: int, n_queries: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    stems = ["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(30_000)]
    vocab = np.array(FUNCTION_WORDS + [s + rng.choice(SUFFIXES) for s in stems])
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    weights /= weights.sum()
    lengths = rng.integers(40, 81, n)
    draws = rng.choice(len(vocab), lengths.sum(), p=weights)
    words = vocab[draws]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(words[bounds[i]:bounds[i + 1]]).capitalize() + "." for i in range(n)]
    queries = []
    for i in rng.integers(0, n, n_queries):  # a few words of one passage (stop words too), one a content word
        passage = words[bounds[i]:bounds[i + 1]]
        content = passage[~np.isin(passage, FUNCTION_WORDS)]
        picked = [rng.choice(content), *rng.choice(passage, rng.integers(2, 6), replace=False)]
        queries.append(" ".join(picked))
    return texts, queries


def timed(fn, cpu: list[float]) -> tuple[float, object]:
    """Wall seconds of ``fn()`` and its result; its CPU seconds (this process) are appended to ``cpu``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start, out


def bm25s_index(texts: list[str], stemmer) -> bm25s.BM25:
    model = bm25s.BM25(method="lucene")
    model.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    return model


def bm25s_search(model: bm25s.BM25, queries: list[str], stemmer, k: int):
    tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    return model.retrieve(tokens, k=k, show_progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    texts, queries = synthetic_corpus(args.passages, args.queries, args.seed)
    analyzer, stemmer = Analyzer(stopwords="en"), Stemmer.Stemmer("english")
    keys = ("ours_index", "bm25s_index", "ours_search", "bm25s_search")
    times: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    with tempfile.TemporaryDirectory(prefix="retrieval_speed.") as tmp:
        end_to_end, _ = timed(lambda: build([Passage(str(i), t) for i, t in enumerate(texts)], Path(tmp) / "idx",
                                            analyzer=analyzer), [])
        for r in range(args.repeats):
            order = ["ours", "bm25s"] if r % 2 == 0 else ["bm25s", "ours"]
            for side in order:
                if side == "ours":  # a fresh analyzer and retriever each round: no stems cached from the last
                    fresh = Analyzer(stopwords="en")
                    times["ours_index"].append(
                        timed(lambda fresh=fresh: BM25Index.build(texts, fresh), cpu["ours_index"])[0])
                    retriever = Retriever.load(Path(tmp) / "idx")
                    times["ours_search"].append(
                        timed(lambda retriever=retriever: retriever.search_many(queries, args.k),
                              cpu["ours_search"])[0])
                else:
                    seconds, model = timed(lambda: bm25s_index(texts, stemmer), cpu["bm25s_index"])
                    times["bm25s_index"].append(seconds)
                    times["bm25s_search"].append(
                        timed(lambda model=model: bm25s_search(model, queries, stemmer, args.k),
                              cpu["bm25s_search"])[0])
                print(f"round {r + 1} {side}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()
                                                            if k.startswith(side)), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    result = {
        "passages": args.passages, "queries": args.queries, "repeats": args.repeats,
        "ours_index_docs_per_s": round(args.passages / med["ours_index"]),
        "bm25s_index_docs_per_s": round(args.passages / med["bm25s_index"]),
        "index_overhead": round(med["ours_index"] / med["bm25s_index"] - 1, 4),
        "ours_queries_per_s": round(args.queries / med["ours_search"]),
        "bm25s_queries_per_s": round(args.queries / med["bm25s_search"]),
        "search_overhead": round(med["ours_search"] / med["bm25s_search"] - 1, 4),
        "index_overhead_cpu": round(med_cpu["ours_index"] / med_cpu["bm25s_index"] - 1, 4),
        "search_overhead_cpu": round(med_cpu["ours_search"] / med_cpu["bm25s_search"] - 1, 4),
        "ours_build_to_disk_s": round(end_to_end, 2),
        "times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "cpu_s": {k: [round(x, 3) for x in v] for k, v in cpu.items()},
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
