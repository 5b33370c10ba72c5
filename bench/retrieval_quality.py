"""Retrieval quality, question -> the paragraph it was written about: recall@1/5/20, MRR@10, nDCG@10.

Data sets (each skipped when absent): SQuAD v2 dev subset (English, 87 paragraphs, 626 questions) and
CMRC 2018 trial (Chinese, 256 paragraphs, 1,002 questions) from ``../shared/data``, and the synthetic QA
passages of ``lmstack synth`` given with ``--synth DIR`` (``qa_passages.jsonl`` of {"id", "text"};
``qa_test.jsonl`` of {"id", "question" or "text", "passage_id" or "passage_ids"}).

Systems: ``bm25s-default`` is bm25s's own tokenizer (a ``\\w\\w+`` regex, English stop words, no stemming:
a Han run without spaces becomes one token); ``bm25`` is lmstack's index with its default analyzer (jieba
search-mode segmentation, en+zh stop words, English Snowball stemming, Lucene BM25); on Chinese data the
``han=jieba`` and ``han=char`` rows change only the segmentation. ``--variants`` adds every BM25 variant;
``--encoder DIR`` adds dense and hybrid (RRF) rows, ``--reranker DIR`` the same lists reranked.

    python bench/retrieval_quality.py [--synth DIR] [--encoder DIR] [--reranker DIR] [--variants] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import bm25s

from lmstack.errors import LmstackError
from lmstack.eval.ir import evaluate
from lmstack.retrieval.bm25 import VARIANTS
from lmstack.retrieval.documents import Passage, read_passages_jsonl
from lmstack.retrieval.index import Retriever, build, load_dense_encoder, load_reranker
from lmstack.retrieval.text import Analyzer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEPTH = 20
COLUMNS = ("recall@1", "recall@5", "recall@20", "mrr@10", "ndcg@10")


class Dataset:
    def __init__(self, name: str, passages: list[Passage], queries: dict[str, str], qrels: dict[str, dict[str, int]]):
        self.name, self.passages, self.queries, self.qrels = name, passages, queries, qrels
        self.chinese = any("\u4e00" <= ch <= "\u9fff" for p in passages[:20] for ch in p.text)


def squad(name: str, path: Path) -> Dataset:
    """A SQuAD-format file: every question (answerable or not) is about the paragraph it sits under."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    passages, queries, qrels = [], {}, {}
    for a, article in enumerate(data):
        for p, paragraph in enumerate(article["paragraphs"]):
            pid = f"{a}-{p}"
            passages.append(Passage(pid, paragraph["context"]))
            for qa in paragraph["qas"]:
                queries[qa["id"]] = qa["question"]
                qrels[qa["id"]] = {pid: 1}
    return Dataset(name, passages, queries, qrels)


def synth(folder: Path) -> Dataset:
    passages = [Passage(pid, text) for _, pid, text in read_passages_jsonl(folder / "qa_passages.jsonl")]
    queries, qrels = {}, {}
    with open(folder / "qa_test.jsonl", encoding="utf-8") as f:
        for n, line in enumerate(f):
            rec = json.loads(line)
            gold = rec.get("passage_ids") or [rec.get("passage_id")]
            text = rec.get("question") or rec.get("text")
            if not text or gold == [None]:
                raise LmstackError(f"{folder / 'qa_test.jsonl'}:{n + 1}: expected question/text and "
                                   f"passage_id/passage_ids fields, found {sorted(rec)}")
            qid = str(rec.get("id", n))
            queries[qid], qrels[qid] = text, {str(g): 1 for g in gold}
    return Dataset("synthetic", passages, queries, qrels)


def scores(dataset: Dataset, run: dict[str, list[str]]) -> dict:
    result = evaluate(run, dataset.qrels, ks=(1, 5, 10, 20))
    return {c: round(result[c], 4) for c in COLUMNS}


def bm25s_default(dataset: Dataset) -> dict:
    model = bm25s.BM25()
    model.index(bm25s.tokenize([p.text for p in dataset.passages], show_progress=False), show_progress=False)
    qids = list(dataset.queries)
    tokens = bm25s.tokenize([dataset.queries[q] for q in qids], show_progress=False)
    docs, _ = model.retrieve(tokens, k=min(DEPTH, len(dataset.passages)), show_progress=False)
    return scores(dataset, {q: [dataset.passages[i].id for i in row] for q, row in zip(qids, docs.tolist())})


def lmstack_rows(dataset: Dataset, work: Path, args: argparse.Namespace) -> list[tuple[str, dict]]:
    qids = list(dataset.queries)
    texts = [dataset.queries[q] for q in qids]

    def run_of(retriever: Retriever, method: str | None = None) -> dict:
        return scores(dataset, {q: [pid for pid, _ in hits]
                                for q, hits in zip(qids, retriever.search_many(texts, DEPTH, method, qids))})

    rows = []
    configs = [("bm25", Analyzer(), "lucene")]
    if dataset.chinese:
        configs += [("bm25 han=jieba", Analyzer(han="jieba"), "lucene"),
                    ("bm25 han=char", Analyzer(han="char"), "lucene")]
    if args.variants:
        configs += [(f"bm25 {v}", Analyzer(), v) for v in VARIANTS if v != "lucene"]
    for label, analyzer, variant in configs:
        build(dataset.passages, work / "idx", analyzer=analyzer, bm25={"variant": variant})
        rows.append((label, run_of(Retriever.load(work / "idx"))))
    if args.encoder:
        encoder = load_dense_encoder(args.encoder)
        build(dataset.passages, work / "idx", method="hybrid", encoder=encoder, encoder_path=args.encoder,
              batch_size=args.batch_size, show_progress=True)
        retriever = Retriever.load(work / "idx", encoder=encoder)
        rows += [("dense", run_of(retriever, "dense")), ("hybrid", run_of(retriever, "hybrid"))]
    if args.reranker:
        reranker = load_reranker(args.reranker)
        retriever = Retriever.load(work / "idx", encoder=encoder if args.encoder else None, reranker=reranker,
                                   depth=args.depth)
        rows.append((f"bm25 + rerank@{args.depth}", run_of(retriever, "bm25")))
        if args.encoder:
            rows.append((f"hybrid + rerank@{args.depth}", run_of(retriever, "hybrid")))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    ap.add_argument("--synth", type=Path, help="lmstack synth output with qa_passages.jsonl and qa_test.jsonl")
    ap.add_argument("--encoder", help="dual-encoder directory: adds dense and hybrid rows")
    ap.add_argument("--reranker", help="cross-encoder directory: adds reranked rows")
    ap.add_argument("--depth", type=int, default=50, help="candidates reranked per query")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--variants", action="store_true", help="also every BM25 variant")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    datasets = []
    for name, rel in (("squad-v2-dev-small", "squad_v2_dev_subset_haystack/small.json"),
                      ("cmrc2018-trial", "cmrc2018/cmrc2018_trial.json")):
        if (args.data / rel).is_file():
            datasets.append(squad(name, args.data / rel))
        else:
            print(f"skipping {name}: {args.data / rel} is absent", file=sys.stderr)
    if args.synth and (args.synth / "qa_test.jsonl").is_file():
        datasets.append(synth(args.synth))
    else:
        print("skipping synthetic: no --synth DIR with qa_passages.jsonl and qa_test.jsonl", file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory(prefix="retrieval_quality.") as tmp:
        for ds in datasets:
            results = [("bm25s-default", bm25s_default(ds)), *lmstack_rows(ds, Path(tmp), args)]
            rows += [{"dataset": ds.name, "passages": len(ds.passages), "queries": len(ds.queries),
                      "system": system, **metrics} for system, metrics in results]
    if args.json:
        print(json.dumps(rows))
        return
    header = f"{'dataset':<20} {'system':<22} {'passages':>8} {'queries':>7} " + " ".join(f"{c:>9}" for c in COLUMNS)
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['dataset']:<20} {r['system']:<22} {r['passages']:>8} {r['queries']:>7} "
              + " ".join(f"{r[c]:>9.3f}" for c in COLUMNS))


if __name__ == "__main__":
    main()
