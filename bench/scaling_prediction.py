"""Predict a 10x-larger run from small ones: sweep, fit L(N, D), plan, run the plan, compare.

1. Data: the demo's prepared shards (runs/demo/data, the demo tokenizer) when they exist, else the built-in
   corpus synthesised and prepared once into OUT/data.
2. ``lmstack scaling sweep``: 5 Llama-style sizes (1x32 .. 4x128, about 0.08 M to 1 M parameters with the
   2,048-token vocabulary: 13x) x 2 token budgets = 10 CPU runs, each with its cosine schedule over its own length.
3. ``lmstack scaling fit`` (Huber / LSE, bootstrap intervals, leave-the-2-largest-out backtest).
4. The target: 10x the largest fitted compute; the fit's compute-optimal N picks the nearest shape of
   ``TARGET_SHAPES``, D = C / 6N; the fit predicts its loss (with the bootstrap interval) *before* it is trained.
5. The target is trained the same way and its exact validation loss compared: |predicted - actual|.

    python bench/scaling_prediction.py --out /tmp/scaling            # ~5 min sweep + ~7 min target, 1 thread
    python bench/scaling_prediction.py --out /tmp/scaling-q --quick  # plumbing check, under a minute
    python bench/scaling_prediction.py --out /tmp/scaling-ts --text ../shared/data/tinyshakespeare/input.txt \
        --tokens 500000,1500000                                      # real text, character-level
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from lmstack.data.prepare import prepare
from lmstack.data.synth import synth
from lmstack.model.config import ModelConfig
from lmstack.model.registry import build_model
from lmstack.scaling.commands import load_fit, scaling_fit
from lmstack.scaling.plan import compute_optimal
from lmstack.scaling.runs import PARAM_COUNTS, param_counts
from lmstack.scaling.sweep import SweepConfig, sweep
from lmstack.train.config import TrainConfig

DEMO_DATA = Path(__file__).resolve().parents[1] / "runs" / "demo" / "data"
FULL = dict(sizes=["1x32", "2x48", "2x64", "3x96", "4x128"], tokens=[200_000, 600_000],
            targets=["4x128", "4x160", "5x160", "6x192", "8x192"])
QUICK = dict(sizes=["1x16", "1x32", "2x32"], tokens=[8_000, 24_000], targets=["2x32", "2x48", "3x48"])


def base_config(block_size: int, device: str = "cpu") -> TrainConfig:
    """Batches of 8 x 64 tokens: a run of D tokens takes D / 512 steps (390 and 1,170 for the grid's budgets):
    with 16 x 64 the 150k-token runs (147 steps) were still in the fast early drop, where no L(N, D) fits."""
    model = ModelConfig(family="llama", block_size=block_size, bias=False, activation="silu", norm_eps=1e-6)
    return TrainConfig(model=model, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_iters=30, weight_decay=0.1,
                       eval_iters=4, log_interval=20, device=device)


def data_dir(out: Path, text: Path | None = None) -> Path:
    if text is not None:  # a real text, one token per character (nanoGPT's shakespeare_char)
        if not (out / "data" / "manifest.json").is_file():
            prepare([text], out=out / "data", tokenizer="char", val_fraction=0.1)
        return out / "data"
    if (DEMO_DATA / "manifest.json").is_file():
        return DEMO_DATA
    if not (out / "data" / "manifest.json").is_file():
        synth(out=out / "corpus")
        prepare([out / "corpus" / "pretrain.jsonl"], out=out / "data", vocab_size=2048)
    return out / "data"


def shape_params(shape: str, base: TrainConfig, vocab: int, head_dim: int, params: str) -> int:
    layers, width = map(int, shape.split("x"))
    cfg = base.model.replace(n_layer=layers, n_embd=width, n_head=width // head_dim, n_kv_head=None,
                             vocab_size=vocab, intermediate_size=None)
    total, non_embedding = param_counts(build_model(cfg))
    return total if params == "total" else non_embedding


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/scaling"))
    ap.add_argument("--quick", action="store_true", help="tiny grid: checks the plumbing only")
    ap.add_argument("--params", choices=list(PARAM_COUNTS), default="total")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (every run trains on it)")
    ap.add_argument("--text", type=Path, default=None,
                    help="sweep on this text file, character-level (e.g. ../shared/data/tinyshakespeare/input.txt) "
                         "instead of the demo corpus")
    ap.add_argument("--tokens", default=None, help="the grid's token budgets, comma-separated (default 200000,600000)")
    ap.add_argument("--sizes", default=None, help="the grid's LxD shapes, comma-separated (default 1x32,...,4x128)")
    ap.add_argument("--targets", default=None, help="shapes the 10x target may take, comma-separated")
    ap.add_argument("--lr-width", type=int, default=None,
                    help="scale each run's lr by this width / its width (muP's Adam rule); default: one lr")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    grid = QUICK if args.quick else FULL
    base = base_config(32 if args.quick else 64, args.device)
    data = data_dir(args.out, args.text)
    for name, cast in (("tokens", int), ("sizes", str), ("targets", str)):
        if getattr(args, name):
            grid = {**grid, name: [cast(t) for t in getattr(args, name).split(",")]}
    manifest = json.loads((data / "manifest.json").read_text())
    vocab, epoch = manifest["vocab_size"], manifest["splits"]["train"]["tokens"]
    if max(grid["tokens"]) > epoch:  # repeated data: D no longer counts fresh tokens, and L(N, D) stops fitting
        raise SystemExit(f"a budget of {max(grid['tokens'])} tokens is more than one epoch of {data} "
                         f"({epoch} training tokens): choose budgets below it")
    t0 = time.perf_counter()
    swept = sweep(SweepConfig(data=data, out=args.out / "sweep", sizes=grid["sizes"], tokens=grid["tokens"],
                              head_dim=16, train=base, lr_width=args.lr_width))
    sweep_s = time.perf_counter() - t0
    fit = scaling_fit(args.out / "sweep" / "runs.jsonl", out=args.out / "fit", params=args.params,
                      bootstrap_samples=100, holdout=2, overwrite=True)
    saved = load_fit(args.out / "fit" / "fit.json")
    law = saved.law
    records = [json.loads(x) for x in (args.out / "sweep" / "runs.jsonl").read_text().splitlines()]
    key = PARAM_COUNTS[args.params]
    c_max = max(6.0 * r[key] * r["tokens"] for r in records)
    target_c = 10 * c_max
    n_opt, _ = compute_optimal(law, target_c)
    shapes = {s: shape_params(s, base, vocab, 16, args.params) for s in grid["targets"]}
    per_step = base.batch_size * base.model.block_size
    budget = {s: math.ceil(target_c / (6 * shapes[s]) / per_step) * per_step for s in shapes}
    within = [s for s in shapes if budget[s] <= epoch] or [max(shapes, key=shapes.get)]  # fresh tokens only
    shape = min(within, key=lambda s: abs(math.log(shapes[s] / n_opt)))
    n, tokens = shapes[shape], budget[shape]
    predicted, (lo, hi) = saved.predict(n, tokens)
    print(f"fit on {len(records)} runs ({swept['trained']} trained in {sweep_s:.0f} s): "
          f"E={law.E:.3f} A={law.A:.4g} B={law.B:.4g} alpha={law.alpha:.3f} beta={law.beta:.3f} "
          f"(rmse {fit['rmse']:.4f}); L(C): {fit['compute_law']}; predicting with {saved.predict_with} "
          f"({fit['predict_with_reason']})", flush=True)
    print(f"target: C = {6 * n * tokens:.3g} FLOPs ({6 * n * tokens / c_max:.1f}x the largest fitted run); "
          f"N_opt = {n_opt:.3g} -> shape {shape} (N = {n}), D = {tokens}; "
          f"predicted loss {predicted:.4f} [{lo:.4f}, {hi:.4f}]", flush=True)
    t1 = time.perf_counter()
    target = sweep(SweepConfig(data=data, out=args.out / "target", sizes=[shape], tokens=[tokens], head_dim=16,
                               train=base, lr_width=args.lr_width))
    actual = json.loads((args.out / "target" / "runs.jsonl").read_text().splitlines()[0])["val_loss"]
    report = {"runs": len(records), "sweep_s": sweep_s, "target_s": time.perf_counter() - t1, "params": args.params,
              "law": law.to_dict(), "compute_law": fit["compute_law"], "predict_with": saved.predict_with,
              "predict_with_reason": fit["predict_with_reason"],
              "target": {"shape": shape, "params": n, "tokens": tokens, "flops": 6.0 * n * tokens,
                         "compute_ratio": 6 * n * tokens / c_max},
              "predicted": predicted, "interval_95": [lo, hi], "actual": actual,
              "abs_error": abs(predicted - actual), "within_interval": bool(lo <= actual <= hi),
              "backtest": fit["backtest"], "trained": target["trained"]}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"actual {actual:.4f}: |predicted - actual| = {abs(predicted - actual):.4f} nats "
          f"(target <= 0.03; 95% interval {'covers' if lo <= actual <= hi else 'misses'} it)")
    bt = fit["backtest"]
    for i, name in enumerate(bt.get("held_out", [])):
        err = bt.get("loss_law_abs_error", [np.nan] * 4)[i]
        cerr = bt.get("compute_law_abs_error", [np.nan] * 4)[i]
        print(f"backtest (fit without the 2 largest-compute runs): {name}: actual {bt['actual'][i]:.4f}, "
              f"|error| L(N,D) {err:.4f}, L(C) {cerr:.4f}")
    print(f"report: {args.out / 'report.json'}")


if __name__ == "__main__":
    main()
