"""Neural retrieval trained on the other split: a dual encoder and a cross-encoder fine-tuned from a pretrained
encoder (all-MiniLM-L6-v2) on the questions of 70% of a set's paragraphs, with BM25 hard negatives, then scored
on the questions of the other 30% against every paragraph (the synthetic set keeps its own train/test split).

Rows: BM25 (lmstack's index, jieba for Chinese); dense with the encoder as it comes; dense fine-tuned (InfoNCE,
in-batch + 3 mined negatives); hybrid (RRF of BM25 and the fine-tuned dense); BM25 -> cross-encoder rerank of
the top 20 (listwise loss over the positive and 3 mined negatives). Dense search is an exact inner product over
all paragraphs, which is what the index's flat FAISS part returns.

Two stages, so the neural one runs where bm25s, jieba and faiss are not installed (a GPU machine):

    python bench/neural_retrieval.py candidates --out bundle.json [--synth DIR]   # BM25 candidates + negatives
    python bench/neural_retrieval.py train bundle.json --encoder MINILM [--device cuda] --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmstack.devices import resolve_device
from lmstack.eval.ir import evaluate
from lmstack.retrieval.cross_encoder import CrossEncoder
from lmstack.retrieval.dense_training import train_dual_encoder
from lmstack.retrieval.dual_encoder import DualEncoder
from lmstack.retrieval.hybrid import rrf
from lmstack.retrieval.rerank_training import train_cross_encoder

DEPTH = 20
HOLDOUT = 0.3
COLUMNS = ("recall@1", "recall@5", "recall@20", "mrr@10", "ndcg@10")


def candidates(args: argparse.Namespace) -> None:
    """Stage 1 (CPU): per set, the passages, training triples with BM25 negatives, test queries with BM25's top."""
    from retrieval_quality import SHARED, squad, synth  # bm25s is needed here only

    from lmstack.retrieval.documents import Passage
    from lmstack.retrieval.index import Retriever, build
    from lmstack.retrieval.negatives import mine_negatives

    files = (("squad-v2-dev-small", "squad_v2_dev_subset_haystack/small.json"),
             ("cmrc2018-trial", "cmrc2018/cmrc2018_trial.json"))
    sets = [squad(name, SHARED / rel) for name, rel in files if (SHARED / rel).is_file()]
    bundle = {}
    with tempfile.TemporaryDirectory(prefix="neural_retrieval.") as tmp:
        for ds in sets + ([synth(args.synth)] if args.synth else []):
            text = {p.id: p.text for p in ds.passages}
            if ds.name == "synthetic":
                records = map(json.loads, open(args.synth / "qa_train.jsonl", encoding="utf-8"))
                train_q = [(r["question"], text[r["passage_id"]]) for r in records]
                test, held = list(ds.queries), set()
            else:
                held = set(random.Random(0).sample(sorted(text), round(HOLDOUT * len(text))))
                train_q = [(ds.queries[q], text[g]) for q, gold in ds.qrels.items() for g in gold if g not in held]
                test = [q for q, gold in ds.qrels.items() if set(gold) <= held]
            build([Passage(k, v) for k, v in text.items()], Path(tmp) / ds.name)
            # negatives come from the training paragraphs only: a held-out paragraph seen as a negative in training
            # is learnt as "never relevant", and its own test questions then rank it last
            build([Passage(k, v) for k, v in text.items() if k not in held], Path(tmp) / f"{ds.name}-train")
            hits = Retriever.load(Path(tmp) / ds.name).search_many([ds.queries[q] for q in test], DEPTH)
            bundle[ds.name] = {
                "passages": text,
                "train": mine_negatives([(q, p, []) for q, p in train_q], Path(tmp) / f"{ds.name}-train", count=3,
                                        depth=DEPTH),
                "test": {q: {"text": ds.queries[q], "qrels": ds.qrels[q], "bm25": [pid for pid, _ in h]}
                         for q, h in zip(test, hits)}}
            print(f"{ds.name}: {len(train_q)} training questions, {len(test)} test questions", file=sys.stderr)
    args.out.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")


def dense_run(model: DualEncoder, data: dict) -> dict[str, list[str]]:
    pids = list(data["passages"])
    docs = model.encode([data["passages"][p] for p in pids], batch_size=128)
    queries = model.encode([t["text"] for t in data["test"].values()], batch_size=128)
    top = np.argsort(-(queries @ docs.T), axis=1)[:, :DEPTH]
    return {q: [pids[i] for i in row] for q, row in zip(data["test"], top)}


def rerank_run(model: CrossEncoder, data: dict) -> dict[str, list[str]]:
    run = {}
    for q, t in data["test"].items():
        scores = model.score(t["text"], [data["passages"][p] for p in t["bm25"]], batch_size=64)
        run[q] = [p for _, p in sorted(zip(scores, t["bm25"]), key=lambda sp: -sp[0])]
    return run


def train(args: argparse.Namespace) -> None:
    """Stage 2 (any device): fine-tune both encoders per set and score every row."""
    bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
    args.device = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="neural_retrieval.") as tmp:
        for name, data in bundle.items():
            qrels = {q: t["qrels"] for q, t in data["test"].items()}
            pairs = [(q, p) for q, p, _ in data["train"]]
            runs = {"bm25": {q: t["bm25"] for q, t in data["test"].items()},
                    "dense (as is)": dense_run(DualEncoder.load(args.encoder, args.device), data)}
            start = time.perf_counter()
            fit = train_dual_encoder(pairs, Path(tmp) / "dense", args.encoder,
                                     negatives=[n for *_, n in data["train"]], epochs=args.epochs, batch_size=32,
                                     lr=args.lr, max_len=256, device=args.device)
            runs["dense fine-tuned"] = dense_run(DualEncoder.load(Path(tmp) / "dense", args.device), data)
            runs["hybrid (bm25 + fine-tuned dense)"] = {
                q: [p for p, _ in rrf([[(p, 0) for p in runs[part][q]] for part in ("bm25", "dense fine-tuned")])]
                for q in qrels}
            dense_s = time.perf_counter() - start
            start = time.perf_counter()
            train_cross_encoder(data["train"], Path(tmp) / "rerank", args.encoder, epochs=args.rerank_epochs,
                                batch_size=16, lr=args.rerank_lr, max_len=256, device=args.device)
            runs[f"bm25 -> rerank@{DEPTH}"] = rerank_run(CrossEncoder.load(Path(tmp) / "rerank", args.device), data)
            rerank_s = time.perf_counter() - start
            for system, run in runs.items():
                scored = evaluate(run, qrels, ks=(1, 5, 10, 20))
                rows.append({"dataset": name, "system": system, "train_questions": len(pairs),
                             "test_questions": len(qrels), **{c: round(scored[c], 4) for c in COLUMNS}})
            rows[-1] |= {"dense_train_s": round(dense_s, 1), "rerank_train_s": round(rerank_s, 1),
                         "dense_loss": [round(fit["first_loss"], 3), round(fit["last_loss"], 3)]}
            print(json.dumps(rows[-len(runs):], ensure_ascii=False), file=sys.stderr)
    report = {"rows": rows, "device": str(args.device), "epochs": args.epochs, "lr": args.lr,
              "rerank_epochs": args.rerank_epochs, "rerank_lr": args.rerank_lr,
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return
    for r in rows:
        print(f"{r['dataset']:<20} {r['system']:<34} " + " ".join(f"{r[c]:.3f}" for c in COLUMNS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    c = sub.add_parser("candidates")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--synth", type=Path, help="lmstack synth output (qa_passages, qa_train, qa_test .jsonl)")
    t = sub.add_parser("train")
    t.add_argument("bundle", type=Path)
    t.add_argument("--encoder", type=Path, required=True, help="pretrained encoder folder (all-MiniLM-L6-v2)")
    t.add_argument("--device", default="auto")
    t.add_argument("--epochs", type=int, default=3, help="dual encoder")
    t.add_argument("--lr", type=float, default=3e-5, help="dual encoder")
    t.add_argument("--rerank-epochs", type=int, default=10, help="cross-encoder (its score head starts untrained)")
    t.add_argument("--rerank-lr", type=float, default=5e-5, help="cross-encoder")
    t.add_argument("--json", action="store_true")
    args = ap.parse_args()
    candidates(args) if args.stage == "candidates" else train(args)


if __name__ == "__main__":
    main()
