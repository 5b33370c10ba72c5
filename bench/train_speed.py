"""Training speed on nanoGPT's documented CPU recipe (tinyshakespeare, character level).

Recipe (the defaults): GPT-2 family without biases, n_layer 4, n_head 4, n_embd 128, block 64, batch 12,
dropout 0, AdamW lr 1e-3 betas (0.9, 0.99) weight decay 0.1, grad clip 1.0, warmup 100 then cosine to 1e-4 at
2000 iterations; first 90% of the characters train, last 10% validate; losses estimated from 20 random batches.

nanoGPT itself is not a dependency, so its configuration is reproduced in the same process as the peer:
`nanogpt-equivalent` = fp32, foreach AdamW, no compile (the plain PyTorch loop nanoGPT runs on a CPU), beside
the lmstack default; the two step alternately, so machine noise hits both alike. The reference nanoGPT
figures measured on this machine are printed beside them.

    python bench/train_speed.py --json            # both variants, 2000 iterations each
    python bench/train_speed.py --variants lmstack --iters 300
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lmstack.data.tokenizer import train_char
from lmstack.model import build_model, preset
from lmstack.train.config import TrainConfig
from lmstack.train.loop import Run
from lmstack.train.optim import build_optimizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
NANOGPT = {"ms_per_iter": 34.5, "tokens_per_s": 22_300, "val_loss": 1.8857, "train_loss": 1.7648}
VARIANTS = {
    "nanogpt-equivalent": dict(precision="fp32", compile=False, fused_optimizer=False),
    "lmstack": dict(),  # TrainConfig's defaults
    "lmstack+fused": dict(fused_optimizer=True),
    "lmstack+compile": dict(compile=True, fused_optimizer=True),
}


class ArrayData:
    """A token array with nanoGPT's ``get_batch`` sampling, in the interface ``Run`` reads (TokenShards')."""

    def __init__(self, tokens: np.ndarray):
        self.tokens = torch.from_numpy(tokens.astype(np.int64))

    def batch(self, batch_size: int, block_size: int, generator: torch.Generator):
        starts = torch.randint(len(self.tokens) - block_size, (batch_size,), generator=generator)
        rows = torch.stack([self.tokens[s:s + block_size + 1] for s in starts.tolist()])
        return rows[:, :-1], rows[:, 1:]


def build_run(name: str, train: ArrayData, val: ArrayData, vocab: int, iters: int) -> Run:
    cfg = TrainConfig(max_iters=iters, lr_decay_iters=2000, **VARIANTS[name])
    torch.manual_seed(cfg.seed)
    model = build_model(preset("tiny", vocab_size=vocab))
    return Run(model, build_optimizer(model, cfg, "cpu"), cfg, train, val, torch.Generator().manual_seed(cfg.seed),
               torch.device("cpu"), model.config.block_size)


def run_interleaved(names: list[str], train: ArrayData, val: ArrayData, vocab: int, iters: int) -> list[dict]:
    """Step every variant in turn, iteration by iteration, so background load hits them alike."""
    runs = {n: build_run(n, train, val, vocab, iters) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for it in range(iters):
        for name, run in runs.items():
            t = time.perf_counter()
            run.step(it)
            times[name].append(time.perf_counter() - t)
        if it % 500 == 0:
            print(f"iter {it}: " + ", ".join(f"{n} {1000 * statistics.median(v[-50:]):.1f} ms" for n, v in times.items()),
                  file=sys.stderr)
    results = []
    for name, run in runs.items():
        ms = 1000 * statistics.median(times[name][min(50, iters // 2):])  # leave out warm-up (and compilation)
        results.append({"variant": name, "ms_per_iter": ms, "tokens_per_s": run.cfg.batch_size * 64 / ms * 1000,
                        "val_loss": run.estimate(val), "train_loss": run.estimate(train),
                        "train_s": sum(times[name]), "first_iter_s": times[name][0]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DATA)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", default=["nanogpt-equivalent", "lmstack"], choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.input.is_file():
        sys.exit(f"{args.input}: not found (the standard corpus lives in ../shared/data/tinyshakespeare)")
    if args.threads:
        torch.set_num_threads(args.threads)
    text = args.input.read_text(encoding="utf-8")
    tok = train_char([text], special_tokens=(), byte_fallback=False)
    ids = np.array(tok.encode(text), dtype=np.uint16)
    n = int(0.9 * len(ids))
    train, val = ArrayData(ids[:n]), ArrayData(ids[n:])
    results = run_interleaved(args.variants, train, val, tok.vocab_size, args.iters)
    by = {r["variant"]: r for r in results}
    report = {"iters": args.iters, "threads": torch.get_num_threads(), "results": results, "nanogpt_reference": NANOGPT,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if "lmstack" in by:
        report |= {"tokens_per_s": by["lmstack"]["tokens_per_s"], "val_loss": by["lmstack"]["val_loss"],
                   "speedup_vs_nanogpt_reference": by["lmstack"]["tokens_per_s"] / NANOGPT["tokens_per_s"]}
        if "nanogpt-equivalent" in by:
            report["speedup_vs_nanogpt_equivalent"] = by["lmstack"]["tokens_per_s"] / by["nanogpt-equivalent"]["tokens_per_s"]
    if args.json:
        print(json.dumps(report))
    else:
        for r in results:
            print(f"{r['variant']:>20}: {r['ms_per_iter']:.1f} ms/iter, {r['tokens_per_s']:,.0f} tokens/s, "
                  f"val {r['val_loss']:.4f}, train {r['train_loss']:.4f}, {r['train_s']:.0f} s of steps")
        print(f"{'nanoGPT (reference)':>20}: {NANOGPT['ms_per_iter']} ms/iter, {NANOGPT['tokens_per_s']:,} tokens/s, "
              f"val {NANOGPT['val_loss']}")


if __name__ == "__main__":
    main()
