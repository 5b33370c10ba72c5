"""Speculative decoding in the serving engine: prompt lookup (``serve --prompt-lookup 3``) against plain
continuous batching, on retrieval-augmented prompts (a passage, a question, "Answer:"), greedy.

Eight requests at once, each made to write all its tokens (eos forbidden), over ``--slots`` slots of the
engine ``lmstack serve`` runs, in-process: wall time until every request has finished, engine passes, and
whether every request got exactly the plain engine's tokens. Alternating runs, medians of ``--repeats``.

    python bench/serve_speculative.py --json
    python bench/serve_speculative.py --slots 4 --requests 8 --new-tokens 96 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import torch

from lmstack.generate.config import GenerationConfig
from lmstack.generate.loading import load_for_decoding
from lmstack.generate.speculative import PromptLookup
from lmstack.serve.engine import Engine, Request


def rag_prompts(corpus: Path, tokenizer, n: int) -> list[list[int]]:
    lines = (corpus / "qa_test.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [tokenizer.encode(f"{q['context']}\nQuestion: {q['question']}\nAnswer:") for q in map(json.loads, lines)]


def serve_all(model, tokenizer, prompts, config, slots: int, drafter) -> tuple[float, int, list[list[int]]]:
    engine = Engine(model, tokenizer, slots=slots, max_queue=len(prompts), drafter=drafter)
    outputs: list[list] = [[] for _ in prompts]
    for p, out in zip(prompts, outputs):
        engine.submit(Request(p, config, out.append, stop_ids=frozenset({tokenizer.eos_id})))
    start = time.perf_counter()
    engine.start()
    try:
        while not all(out and out[-1].finish for out in outputs):
            threading.Event().wait(0.002)
    finally:
        engine.stop()
    return time.perf_counter() - start, engine.steps, [[e.token for e in out if e.token is not None] for out in outputs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/demo/train/model")
    ap.add_argument("--corpus", type=Path, default=Path("runs/demo/corpus"))
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--num-draft", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_for_decoding(args.model)
    prompts = rag_prompts(args.corpus, tokenizer, args.requests)
    config = GenerationConfig(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)  # no early eos
    runs: dict[str, list] = {"plain": [], "lookup": []}
    for _ in range(args.repeats):
        runs["plain"].append(serve_all(model, tokenizer, prompts, config, args.slots, None))
        runs["lookup"].append(serve_all(model, tokenizer, prompts, config, args.slots,
                                        PromptLookup(3, args.num_draft)))
    plain, lookup = (statistics.median(r[0] for r in runs[k]) for k in ("plain", "lookup"))
    report = {"requests": args.requests, "slots": args.slots, "new_tokens": args.new_tokens,
              "threads": args.threads, "plain_s": round(plain, 3), "lookup_s": round(lookup, 3),
              "speedup": round(plain / lookup, 2), "plain_passes": runs["plain"][0][1],
              "lookup_passes": runs["lookup"][0][1],
              "identical": all(r[2] == runs["plain"][0][2] for r in runs["plain"] + runs["lookup"])}
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
