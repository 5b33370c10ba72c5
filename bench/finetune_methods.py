"""Instruction tuning on the synthetic world: exact match on held-out instructions per adaptation method.

    python bench/finetune_methods.py --model runs/demo/train/model --data runs/demo/corpus --json

For the untuned base and then each method (full, lora, adapter, prefix, prompt): `lmstack finetune` in a
fresh process (so each peak-memory figure is its own), then `lmstack chat-eval` on sft_test.jsonl. Prints a
table of exact match, trainable-parameter fraction, wall time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# method -> its own settings; every method shares the loop settings below. Learning rates follow each
# method's usual range (prompt tuning needs a far larger one, as Lester et al. 2021 report).
METHODS = {
    "full": ["--lr", "1e-3", "--min_lr", "1e-4"],
    "lora": ["--lr", "3e-3", "--lora.r", "2", "--lora.targets", "all-linear"],  # alpha 16 (the default)
    "adapter": ["--lr", "3e-3", "--adapter.size", "8"],
    "prefix": ["--lr", "3e-2", "--min_lr", "3e-3", "--prefix.n_virtual", "16"],
    "prompt": ["--lr", "0.3", "--min_lr", "0.03", "--prompt.n_virtual", "16",
               "--prompt.init_text", "Answer the question about the world."],
}


def lmstack(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "lmstack", *args, "--json"], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"lmstack {args[0]} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="pretrained base model directory")
    p.add_argument("--data", required=True, type=Path, help="folder with sft_train.jsonl and sft_test.jsonl")
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=320, help="test conversations scored")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="finetune_methods_"))
    test = ["--data", str(args.data / "sft_test.jsonl"), "--limit", str(args.limit)]
    rows = [{"method": "untuned", **_em(lmstack("chat-eval", "--model", args.model, *test))}]
    for method in args.methods:
        start = time.perf_counter()
        run = lmstack("finetune", "--model", args.model, "--data", str(args.data / "sft_train.jsonl"),
                      "--out", str(out / method), "--method", method, "--max_iters", str(args.iters),
                      "--batch_size", str(args.batch_size), "--eval_interval", str(args.iters), *METHODS[method])
        wall = time.perf_counter() - start
        adapter = [] if method == "full" else ["--adapter", str(out / method / "adapter")]
        model = str(out / method / "model") if method == "full" else args.model
        rows.append({"method": method, **_em(lmstack("chat-eval", "--model", model, *adapter, *test)),
                     "trainable_fraction": run["trainable_fraction"], "trainable_params": run["trainable_params"],
                     "val_loss": run["val_loss"], "train_wall_s": round(wall, 1),
                     "peak_memory_mb": run["peak_memory_mb"]})
        print(json.dumps(rows[-1]), file=sys.stderr)
    if args.json:
        print(json.dumps({"iters": args.iters, "batch_size": args.batch_size, "rows": rows}))
        return
    print(f"{'method':<9}{'exact match':>12}{'trainable':>12}{'val loss':>10}{'wall s':>8}{'peak MB':>9}")
    for r in rows:
        print(f"{r['method']:<9}{r['exact_match']:>12.3f}{r.get('trainable_fraction', 0):>12.4%}"
              f"{r.get('val_loss', float('nan')):>10.3f}{r.get('train_wall_s', 0):>8}{r.get('peak_memory_mb', 0):>9}")


def _em(result: dict) -> dict:
    return {"exact_match": result["exact_match"], "n": result["n"], "by_kind": result["by_kind"]}


if __name__ == "__main__":
    main()
