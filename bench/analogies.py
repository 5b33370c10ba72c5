"""Analogy accuracy and coverage of a model's word vectors on the synthetic world's analogy set.

The questions are the ``analogies`` dataset of ``lmstack synth`` for the world of --seed (the demo corpus is seed
0), written to a temporary analogies_test.jsonl; each vector source (the input embeddings, then the hidden state
after each block, the word alone as its context) is scored with 3CosAdd and 3CosMul over the questions' words
as the vocabulary (247 words for seed 0, so a blind guess is right about 1 time in 244).

    python bench/analogies.py                       # the demo model, runs/demo/train/model
    python bench/analogies.py --model DIR --json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from lmstack.data.synth import DATASETS, build_world
from lmstack.interpret.vector_commands import inspect_analogies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("runs/demo/train/model"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, nargs="*", default=None, help="blocks to try (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    records = DATASETS["analogies"](build_world(args.seed), random.Random(f"{args.seed}:dataset:analogies"), 1.0)
    n_layer = json.loads((args.model / "config.json").read_text())["lmstack"]["n_layer"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        questions = Path(tmp) / "analogies_test.jsonl"
        questions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records["test"]),
                             encoding="utf-8")
        for layer in [None, *(args.layers if args.layers is not None else range(1, n_layer + 1))]:
            for method in ("3cosadd", "3cosmul"):
                start = time.perf_counter()
                out = inspect_analogies(args.model, questions, method=method, layer=layer)
                rows.append({"vectors": out["vectors"], "method": method, "accuracy": round(out["accuracy"], 4),
                             "coverage": round(out["coverage"], 4), "correct": out["correct"],
                             "covered": out["covered"], "sections": out["sections"],
                             "seconds": round(time.perf_counter() - start, 2)})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    print(f"{len(records['test'])} questions, model {args.model}")
    for r in rows:
        print(f"{r['vectors']:<28} {r['method']:<8} accuracy {r['accuracy']:.3f} ({r['correct']}/{r['covered']}) "
              f"coverage {r['coverage']:.3f}  {r['seconds']}s")
    best = max(rows, key=lambda r: r["accuracy"])
    print(f"best: {best['vectors']} {best['method']}, per section:")
    for name, acc in best["sections"].items():
        print(f"  {name:<20} {acc:.3f}")


if __name__ == "__main__":
    main()
