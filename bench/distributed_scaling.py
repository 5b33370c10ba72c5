"""Tokens/s of ``lmstack train`` on the GPT-2-small shape: one process vs two gloo processes (DDP, FSDP2).

The same global batch in every row (``--batch_size`` rows of ``--block`` tokens per step; two processes read
half each), fp32 on the CPU, ``--steps`` steps; tokens/s is the median of the logged steps after the first
``--skip`` (start-up and the first allocations). Rows: 1 process with 1 thread, 1 process with 2 threads (the
same cores as two processes), 2 processes x 1 thread with DDP and with FSDP2. The body is GPT-2 small (12
layers, 12 heads, d=768, tied embeddings); the vocabulary is the synthetic corpus tokenizer's (``--vocab``), not
50257. On a 2-core machine this is a floor: the all-reduce of 85M+ gradients over loopback competes with the
compute for the same two cores, where GPUs with NVLink overlap it.

    python bench/distributed_scaling.py                     # ~5 min on 2 cores
    python bench/distributed_scaling.py --steps 10 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lmstack.data.prepare import prepare
from lmstack.data.synth import synth

MODEL = ["--model.family", "gpt2", "--model.n_layer", "12", "--model.n_head", "12", "--model.n_embd", "768"]


def run(data: Path, out: Path, args, procs: int, threads: int, parallel: str) -> dict:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)] \
        if procs > 1 else [sys.executable]
    cmd = [*launch, "-m", "lmstack", "train", "--data", str(data), "--out", str(out), *MODEL,
           "--model.block_size", str(args.block), "--batch_size", str(args.batch_size), "--max_iters",
           str(args.steps), "--log_interval", "1", "--eval_interval", str(args.steps + 1), "--eval_iters", "1",
           "--checkpoint_interval", str(10 * args.steps), "--precision", "fp32", "--device", "cpu",
           "--warmup_iters", "2", "--parallel", parallel]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tps = [r["tokens_per_s"] for r in logged if "tokens_per_s" in r and r["iter"] > args.skip]
    return {"processes": procs, "threads_each": threads, "parallel": parallel,
            "tokens_per_s": round(statistics.median(tps), 1),
            "last_loss": next(r["loss"] for r in reversed(logged) if "loss" in r),
            "command": " ".join([f"OMP_NUM_THREADS={threads}", "python", *cmd[1:]])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth(out=tmp / "corpus", scale=0.1)
        prepare([tmp / "corpus" / "pretrain.jsonl"], out=tmp / "data", vocab_size=args.vocab)
        rows = [run(tmp / "data", tmp / name, args, procs, threads, parallel)
                for name, procs, threads, parallel in (("one", 1, 1, "none"), ("one2", 1, 2, "none"),
                                                       ("ddp", 2, 1, "ddp"), ("fsdp", 2, 1, "fsdp"))]
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["speedup_vs_1x1"] = round(r["tokens_per_s"] / base, 2)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"GPT-2-small body, block {args.block}, global batch {args.batch_size}, {args.steps} steps, fp32, CPU")
    print(f"{'processes x threads':>20} {'parallel':>8} {'tokens/s':>9} {'vs 1x1':>7}")
    for r in rows:
        print(f"{r['processes']:>12} x {r['threads_each']:<5} {r['parallel']:>8} {r['tokens_per_s']:>9,.0f} "
              f"{r['speedup_vs_1x1']:>6.2f}x")


if __name__ == "__main__":
    main()
