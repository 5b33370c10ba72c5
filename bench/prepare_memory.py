"""Does ``lmstack prepare`` stream? Wall time, tokens/s and peak RSS on a large corpus (target: < 1 GB RSS
on 1 GB of input).

    python bench/prepare_memory.py --size-mb 1024 --json
    python bench/prepare_memory.py --input big.jsonl --tokenizer char

Without ``--input`` it writes a corpus of the requested size in a temp folder (the built-in corpus for a few
seeds, repeated) and deletes it afterwards. ``prepare`` runs in a child process, so its peak RSS is the
children's ``ru_maxrss``, measured apart from this script.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmstack.cli import emit


def make_corpus(path: Path, size_mb: float) -> None:
    """Write ``size_mb`` MB of .jsonl: the built-in corpus for seeds 0-3, repeated until big enough."""
    from lmstack.data.synth import generate_documents

    lines = [json.dumps({"text": r["text"]}, ensure_ascii=False) + "\n" for seed in range(4)
             for r in generate_documents(seed=seed)]
    target, written = size_mb * 2**20, 0
    with open(path, "w", encoding="utf-8") as f:
        for line in itertools.cycle(lines):
            if written >= target:
                break
            f.write(line)
            written += len(line.encode("utf-8"))


def run(input_path: Path, out: Path, tokenizer: str) -> dict:
    command = [sys.executable, "-m", "lmstack", "prepare", str(input_path), "--out", str(out),
               "--tokenizer", tokenizer, "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    wall = time.perf_counter() - start
    result = json.loads(done.stdout)
    tokens = result["train_tokens"] + result["val_tokens"]
    return {
        "input_mb": round(input_path.stat().st_size / 2**20, 1),
        "tokenizer": tokenizer,
        "wall_s": round(wall, 1),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall),
        "mb_per_s": round(input_path.stat().st_size / 2**20 / wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),  # Linux: KiB
        "prepare": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="corpus to prepare (default: generate one)")
    parser.add_argument("--size-mb", type=float, default=1024, help="size of the generated corpus")
    parser.add_argument("--tokenizer", default="bpe", help="bpe, char or a tokenizer path, as for prepare")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lmstack-bench-") as tmp:
        input_path = args.input
        if input_path is None:
            input_path = Path(tmp) / "corpus.jsonl"
            print(f"writing a {args.size_mb:.0f} MB corpus to {input_path}", file=sys.stderr)
            make_corpus(input_path, args.size_mb)
        report = run(input_path, Path(tmp) / "out", args.tokenizer)
    emit(report, args.json)


if __name__ == "__main__":
    main()
