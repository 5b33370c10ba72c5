"""End-to-end ``lmstack ask`` latency: retrieve (BM25) -> read (extractive reader) over the synthetic passages.

Two figures per question, median and p90 over the synthetic held-out questions:
  cold  ``ask()`` as the CLI runs it: loads the index and the reader, searches, reads the top k passages
  warm  index and reader already loaded: search + read only (what a server would pay per question)
The reader is the demo's shape (bert-tiny, 64 wide, 112-token windows), untrained unless --reader is given:
latency does not depend on the weights. Process start-up (python, torch imports) is not included.

    python bench/ask_latency.py --json
    python bench/ask_latency.py --k 10 --questions 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lmstack.data.synth import synth
from lmstack.qa.ask import ask, read_passages
from lmstack.qa.reader import Reader, ReaderSettings, new_reader
from lmstack.qa.squad import read_squad
from lmstack.retrieval.documents import Passage
from lmstack.retrieval.index import Retriever, build


def percentiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median_ms": round(1000 * statistics.median(xs), 2),
            "p90_ms": round(1000 * xs[int(0.9 * (len(xs) - 1))], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=5, help="passages retrieved and read per question")
    ap.add_argument("--questions", type=int, default=30)
    ap.add_argument("--reader", type=Path, default=None,
                    help="reader directory (default: an untrained demo-shaped one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ask-bench-") as tmp:
        tmp = Path(tmp)
        synth(tmp / "synth", seed=0, scale=1.0)
        passages = [json.loads(line)
                    for line in (tmp / "synth" / "qa_passages.jsonl").read_text(encoding="utf-8").splitlines()]
        build([Passage(p["id"], p["text"]) for p in passages], tmp / "index")
        questions = [ex.question for ex in read_squad(tmp / "synth" / "qa_test.jsonl")[0]][:args.questions]
        reader_dir = args.reader
        if reader_dir is None:
            train, _ = read_squad(tmp / "synth" / "qa_train.jsonl")
            reader_dir = tmp / "reader"
            new_reader(train, vocab_size=1000, settings=ReaderSettings(max_len=112, doc_stride=48),
                       n_embd=64).save(reader_dir)
        ask(questions[0], tmp / "index", reader=reader_dir, k=args.k)  # warm the imports and jieba's dictionary
        cold, cold_parts = [], {"retrieve": [], "answer": []}
        for q in questions:
            start = time.perf_counter()
            out = ask(q, tmp / "index", reader=reader_dir, k=args.k)
            cold.append(time.perf_counter() - start)
            for part in cold_parts:
                cold_parts[part].append(out["seconds"][part])
        retriever, reader = Retriever.load(tmp / "index"), Reader.load(reader_dir)
        warm, search_s = [], []
        for q in questions:
            start = time.perf_counter()
            hits = retriever.search(q, args.k)
            mid = time.perf_counter()
            read_passages(reader, q, [(pid, retriever.text(pid)) for pid, _ in hits])
            warm.append(time.perf_counter() - start)
            search_s.append(mid - start)
    report = {"questions": len(questions), "k": args.k, "passages": len(passages), "threads": args.threads,
              "cold": percentiles(cold), "cold_retrieve": percentiles(cold_parts["retrieve"]),
              "cold_answer": percentiles(cold_parts["answer"]), "warm": percentiles(warm),
              "warm_search": percentiles(search_s), "torch": torch.__version__}
    if args.json:
        print(json.dumps(report))
        return
    for key in ("cold", "cold_retrieve", "cold_answer", "warm", "warm_search"):
        print(f"{key:<14} median {report[key]['median_ms']:8.2f} ms   p90 {report[key]['p90_ms']:8.2f} ms")


if __name__ == "__main__":
    main()
