"""IR evaluation of a ranked run against TREC qrels: recall@k, MRR@k, nDCG@k, MAP (as trec_eval defines them).

For one query with judged relevance rel(d) (relevant: rel > 0; R the relevant set) and ranking d_1, d_2, ...:

    recall@k = |{i <= k : d_i in R}| / |R|
    RR@k     = 1 / min{i <= k : d_i in R}, or 0 when none          (MRR: its mean over queries)
    nDCG@k   = DCG@k / IDCG@k,  DCG@k = sum_{i <= k} rel(d_i) / log2(i + 1)     (Järvelin & Kekäläinen 2002;
               graded, linear gains as in trec_eval; IDCG@k: the same sum over the ideal ordering of judgements)
    AP       = (1/|R|) sum_{i : d_i in R} precision@i                (MAP: its mean; the whole run, uncut)

The queries evaluated are those of the qrels with at least one relevant passage. A run ranks by score, best
first (ties keep the listed order); unjudged passages count as not relevant. Mismatched ids are counted and
warned about, never fatal: run queries absent from the qrels are ignored, qrels queries absent from the run
score 0 (the run failed them), and with ``--index`` relevant passages missing from the index are counted
(no system could retrieve them).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io import read_json
from lmstack.retrieval.documents import read_passages_jsonl

Qrels = dict[str, dict[str, int]]
Run = dict[str, list[str]]


def read_qrels(path: str | Path) -> Qrels:
    """``qid iteration docid relevance`` lines (whitespace-separated; relevance an integer)."""
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"{path}: file not found")
    qrels: Qrels = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                fields = raw.decode("utf-8").split()
            except UnicodeDecodeError as e:
                raise LmstackError(f"{path}:{lineno}: not UTF-8") from e
            if not fields:
                continue
            if len(fields) != 4 or not fields[3].lstrip("-").isdigit():
                raise LmstackError(f"{path}:{lineno}: expected 'qid 0 docid relevance' (an integer relevance)")
            qrels.setdefault(fields[0], {})[fields[2]] = int(fields[3])
    if not qrels:
        raise LmstackError(f"{path}: no judgements in the file")
    return qrels


def read_run(path: str | Path) -> Run:
    """The JSON ``lmstack search`` writes: {qid: [{"id", "score"}, ...]}, as ranked passage ids per query."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise LmstackError(f"{path}: expected a JSON object mapping query ids to rankings")
    run: Run = {}
    for qid, hits in data.items():
        if not isinstance(hits, list) or not all(isinstance(h, dict) and isinstance(h.get("id"), str) for h in hits):
            raise LmstackError(f"{path}: query {qid!r}: expected a list of {{\"id\", \"score\"}} objects")
        if all(isinstance(h.get("score"), (int, float)) for h in hits):
            hits = sorted(hits, key=lambda h: -h["score"])
        ids = [h["id"] for h in hits]
        if len(set(ids)) != len(ids):
            raise LmstackError(f"{path}: query {qid!r} lists a passage twice")
        run[qid] = ids
    return run


def recall(ranked: list[str], rels: dict[str, int], k: int) -> float:
    relevant = sum(1 for r in rels.values() if r > 0)
    return sum(1 for d in ranked[:k] if rels.get(d, 0) > 0) / relevant


def reciprocal_rank(ranked: list[str], rels: dict[str, int], k: int) -> float:
    return next((1.0 / i for i, d in enumerate(ranked[:k], 1) if rels.get(d, 0) > 0), 0.0)


def ndcg(ranked: list[str], rels: dict[str, int], k: int) -> float:
    dcg = sum(max(rels.get(d, 0), 0) / math.log2(i + 1) for i, d in enumerate(ranked[:k], 1))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, 1))
    return dcg / idcg


def average_precision(ranked: list[str], rels: dict[str, int]) -> float:
    relevant = sum(1 for r in rels.values() if r > 0)
    hits, total = 0, 0.0
    for i, d in enumerate(ranked, 1):
        if rels.get(d, 0) > 0:
            hits += 1
            total += hits / i
    return total / relevant


def query_metrics(ranked: list[str], rels: dict[str, int], ks: Iterable[int]) -> dict[str, float]:
    """All measures for one query (``rels`` must hold a relevant passage)."""
    out = {}
    for k in ks:
        out[f"recall@{k}"] = recall(ranked, rels, k)
        out[f"mrr@{k}"] = reciprocal_rank(ranked, rels, k)
        out[f"ndcg@{k}"] = ndcg(ranked, rels, k)
    out["map"] = average_precision(ranked, rels)
    return out


def evaluate(run: Run, qrels: Qrels, ks: Iterable[int] = (10,)) -> dict:
    """Mean measures over the qrels queries with a relevant passage, plus counts of mismatched queries."""
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise LmstackError(f"cut-offs must be positive, got {ks}")
    judged = {q: rels for q, rels in qrels.items() if any(r > 0 for r in rels.values())}
    if not judged:
        raise LmstackError("the qrels judge no passage relevant (relevance > 0)")
    per_query = [query_metrics(run.get(q, []), rels, ks) for q, rels in judged.items()]
    means = {m: sum(p[m] for p in per_query) / len(per_query) for m in per_query[0]}
    return {"queries": len(judged), **means,
            "qrels_queries_missing_from_run": sum(1 for q in judged if q not in run),
            "run_queries_without_qrels": sum(1 for q in run if q not in qrels),
            "qrels_queries_without_relevant": len(qrels) - len(judged)}


def ir_eval(*, run: Path, qrels: Path, k: int = 10, index: Path | None = None) -> dict:
    """Score a run (the JSON lmstack search writes) against TREC qrels: recall@k, MRR@k, nDCG@k and MAP.

    Args:
        run: RUN.json: {query id: [{"id", "score"}, ...]}
        qrels: TREC qrels file: 'qid 0 docid relevance' per line
        k: cut-off for recall, MRR and nDCG
        index: an lmstack index: also count relevant passages the index does not hold
    """
    judgements = read_qrels(qrels)
    result = evaluate(read_run(run), judgements, (k,))
    warnings = {"qrels_queries_missing_from_run": "qrels queries have no ranking in the run: scored 0",
                "run_queries_without_qrels": "run queries have no qrels: ignored",
                "qrels_queries_without_relevant": "qrels queries judge nothing relevant: ignored"}
    if index is not None:
        passages = Path(index) / "passages.jsonl"
        if not passages.is_file():
            raise LmstackError(f"--index {index}: not an lmstack index (no passages.jsonl)")
        known = {pid for _, pid, _ in read_passages_jsonl(passages)}
        result["relevant_ids_not_in_index"] = sum(
            1 for rels in judgements.values() for d, r in rels.items() if r > 0 and d not in known)
        warnings["relevant_ids_not_in_index"] = f"relevant passage ids in the qrels are not in {index}"
    for key, message in warnings.items():
        if result.get(key):
            print(f"ir-eval: warning: {result[key]} {message}", file=sys.stderr)
    return result
