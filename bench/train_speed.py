"""Training speed on nanoGPT's documented CPU recipe (tinyshakespeare, character level).

Recipe (the defaults): GPT-2 family without biases, n_layer 4, n_head 4, n_embd 128, block 64, batch 12,
dropout 0, AdamW lr 1e-3 betas (0.9, 0.99) weight decay 0.1, grad clip 1.0, warmup 100 then cosine to 1e-4 at
2000 iterations; first 90% of the characters train, last 10% validate; losses estimated from 20 random batches.
``full_val_loss`` is the mean token cross-entropy over the whole validation split (non-overlapping 64-token
windows, fp32), the same figure without the 20-batch estimate's sampling noise.

nanoGPT itself is not a dependency, so its configuration is reproduced in the same process as the peer:
`nanogpt-equivalent` = fp32, foreach AdamW, no compile (the plain PyTorch loop nanoGPT runs on a CPU), beside
the lmstack default; the two step alternately, so machine noise hits both alike. The reference nanoGPT
figures measured on this machine are printed beside them.

Every variant draws its random numbers as nanoGPT's train.py does, number for number, from a generator seeded
like nanoGPT's (1337): the initial weights in GPT.__init__'s order (``nanogpt_init``), the first batch before the
loop, each next batch after a step's forward pass, and 20 train then 20 val estimate batches every 250
iterations. So `nanogpt-equivalent` (lmstack's model, optimizer and loop in fp32) ends exactly where nanoGPT's own
run does (val 1.8857, train 1.7648 at iteration 2000), and the lmstack default differs from it by bf16 alone.

``--seeds`` repeats the comparison with each seed (nanoGPT's streams for that seed); the
report's ``results`` hold every (seed, variant), ``summary`` the median and mean per variant across seeds, and the
top-level ``tokens_per_s``, ``val_loss`` and ``speedup_*`` are lmstack's medians across seeds (with the one
default seed, 1337, that run's figures).

    python bench/train_speed.py --json            # both variants, 2000 iterations each
    python bench/train_speed.py --variants lmstack --iters 300
    python bench/train_speed.py --seeds 1337 1 2 3 4 --json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmstack.model import build_model, preset
from lmstack.text.tokenizer import train_char
from lmstack.train.config import TrainConfig
from lmstack.train.objectives.causal import CausalLM, causal_lm_loss
from lmstack.train.trainer import Trainer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
NANOGPT = {"ms_per_iter": 34.5, "tokens_per_s": 22_300, "val_loss": 1.8857, "train_loss": 1.7648}
EVAL_INTERVAL, EVAL_ITERS = 250, 20
VARIANTS = {
    "nanogpt-equivalent": dict(precision="fp32", compile=False, fused_optimizer=False),
    "lmstack": dict(),  # TrainConfig's defaults
    "lmstack+fused": dict(fused_optimizer=True),
    "lmstack+compile": dict(compile=True, fused_optimizer=True),
}


class ArrayData:
    """A token array with nanoGPT's ``get_batch`` sampling, in the interface ``CausalLM`` reads (TokenShards')."""

    def __init__(self, tokens: np.ndarray):
        self.tokens = torch.from_numpy(tokens.astype(np.int64))

    def batch(self, batch_size: int, block_size: int, generator: torch.Generator):
        starts = torch.randint(len(self.tokens) - block_size, (batch_size,), generator=generator)
        rows = torch.stack([self.tokens[s:s + block_size + 1] for s in starts.tolist()])
        return rows[:, :-1], rows[:, 1:]


class Prefetched:
    """nanoGPT's batch order: the first batch is drawn before the loop, each next one right after the forward
    pass of a step (so the estimates at iteration 0 come after the first training batch). Every draw, the
    estimates' too, comes from the one ``generator`` (the one the weights were initialised from), as nanoGPT's."""

    def __init__(self, data: ArrayData, batch_size: int, block_size: int, generator: torch.Generator):
        self.data, self.generator = data, generator
        self.next = data.batch(batch_size, block_size, generator)

    def batch(self, batch_size: int, block_size: int, _: torch.Generator):
        current, self.next = self.next, self.data.batch(batch_size, block_size, self.generator)
        return current


def nanogpt_init(model: torch.nn.Module, g: torch.Generator) -> None:
    """Initial weights drawn from ``g`` exactly as nanoGPT's GPT.__init__ draws them from torch's global generator:
    the modules' default initialisations in construction order (overwritten, but they advance the stream), then
    normal(0, 0.02) in ``apply`` order (the tied lm_head last, so it sets the embedding), then the residual
    projections at 0.02 / sqrt(2 n_layer). Norm weights start at one and draw nothing."""
    linears = [w for b in model.blocks
               for w in (b.attn.qkv.weight, b.attn.proj.weight, b.mlp.fc.weight, b.mlp.proj.weight)]
    with torch.no_grad():
        for w in (model.tok_emb.weight, model.pos_emb.weight):  # nn.Embedding's reset_parameters
            torch.nn.init.normal_(torch.empty_like(w), generator=g)
        for w in (*linears, model.lm_head.weight):  # nn.Linear's reset_parameters (no biases)
            torch.nn.init.kaiming_uniform_(torch.empty_like(w), a=math.sqrt(5), generator=g)
        for w in (model.tok_emb.weight, model.pos_emb.weight, *linears, model.lm_head.weight):
            torch.nn.init.normal_(w, mean=0.0, std=0.02, generator=g)
        for b in model.blocks:
            for w in (b.attn.proj.weight, b.mlp.proj.weight):
                torch.nn.init.normal_(w, mean=0.0, std=0.02 / math.sqrt(2 * len(model.blocks)), generator=g)


def build_run(name: str, train: ArrayData, val: ArrayData, vocab: int, iters: int, seed: int) -> Trainer:
    cfg = TrainConfig(max_iters=iters, lr_decay_iters=2000, seed=seed, eval_iters=EVAL_ITERS, device="cpu",
                      **VARIANTS[name])
    model = build_model(preset("tiny", vocab_size=vocab))
    g = torch.Generator().manual_seed(cfg.seed)
    nanogpt_init(model, g)
    block = model.config.block_size
    objective = CausalLM(Prefetched(train, cfg.batch_size, block, g), val, cfg.batch_size, block)
    return Trainer(objective, cfg, model=model, progress=False)


@torch.no_grad()
def estimate(run: Trainer, data: ArrayData) -> float:
    """nanoGPT's estimate_loss for one split: the mean loss of ``eval_iters`` batches from the run's own stream."""
    run.model.eval()
    losses = torch.zeros(run.cfg.eval_iters)
    for k in range(run.cfg.eval_iters):
        x, y = data.batch(run.cfg.batch_size, run.objective.block, run.objective.data["train"].generator)
        with run.autocast():
            losses[k] = causal_lm_loss(run.forward(x), y).item()
    run.model.train()
    return losses.mean().item()


@torch.no_grad()
def full_loss(run: Trainer, data: ArrayData) -> float:
    """Mean token cross-entropy over all of ``data`` in non-overlapping windows of the run's block, in fp32."""
    block = run.objective.block
    n = (len(data.tokens) - 1) // block * block
    x, y = data.tokens[:n].view(-1, block), data.tokens[1:n + 1].view(-1, block)
    run.model.eval()
    total = sum(F.cross_entropy(run.model(xb).float().flatten(0, 1), yb.reshape(-1), reduction="sum").item()
                for xb, yb in zip(x.split(256), y.split(256)))
    run.model.train()
    return total / n


def run_interleaved(names: list[str], train: ArrayData, val: ArrayData, vocab: int, iters: int,
                    seed: int) -> list[dict]:
    """Step every variant in turn, iteration by iteration, so background load hits them alike."""
    runs = {n: build_run(n, train, val, vocab, iters, seed) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, tuple[float, float]] = {}
    for it in range(iters + 1):
        if it % EVAL_INTERVAL == 0 or it == iters:
            losses = {name: (estimate(run, train), estimate(run, val)) for name, run in runs.items()}
        if it == iters:
            break
        for name, run in runs.items():
            t = time.perf_counter()
            run.step(it)
            times[name].append(time.perf_counter() - t)
        if it % 500 == 0:
            recent = ", ".join(f"{n} {1000 * statistics.median(v[-50:]):.1f} ms" for n, v in times.items())
            print(f"seed {seed} iter {it}: {recent}", file=sys.stderr)
    results = []
    for name, run in runs.items():
        ms = 1000 * statistics.median(times[name][min(50, iters // 2):])  # leave out warm-up (and compilation)
        results.append({"seed": seed, "variant": name, "ms_per_iter": ms,
                        "tokens_per_s": run.cfg.batch_size * 64 / ms * 1000, "val_loss": losses[name][1],
                        "full_val_loss": full_loss(run, val), "train_loss": losses[name][0],
                        "train_s": sum(times[name]), "first_iter_s": times[name][0]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DATA)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", default=["nanogpt-equivalent", "lmstack"], choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337])
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
    results = [r for seed in args.seeds
               for r in run_interleaved(args.variants, train, val, tok.vocab_size, args.iters, seed)]
    by = {v: {r["seed"]: r for r in results if r["variant"] == v} for v in args.variants}
    stats = (statistics.median, statistics.mean)
    summary = {v: {f"{k}_{stat.__name__}": stat([r[k] for r in runs.values()])
                   for k in ("val_loss", "full_val_loss", "tokens_per_s") for stat in stats} for v, runs in by.items()}
    report = {"iters": args.iters, "threads": torch.get_num_threads(), "seeds": args.seeds, "results": results,
              "summary": summary, "nanogpt_reference": NANOGPT,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if "lmstack" in by:
        lm = summary["lmstack"]
        report |= {"tokens_per_s": lm["tokens_per_s_median"], "val_loss": lm["val_loss_median"],
                   "speedup_vs_nanogpt_reference": lm["tokens_per_s_median"] / NANOGPT["tokens_per_s"]}
        if "nanogpt-equivalent" in by:
            report["speedup_vs_nanogpt_equivalent"] = statistics.median(
                by["lmstack"][s]["tokens_per_s"] / by["nanogpt-equivalent"][s]["tokens_per_s"] for s in args.seeds)
    if args.json:
        print(json.dumps(report))
    else:
        for r in results:
            print(f"{r['variant']:>20} (seed {r['seed']}): {r['ms_per_iter']:.1f} ms/iter, {r['tokens_per_s']:,.0f} "
                  f"tokens/s, val {r['val_loss']:.4f} (full {r['full_val_loss']:.4f}), train {r['train_loss']:.4f}, "
                  f"{r['train_s']:.0f} s of steps")
        for v, s in summary.items():
            print(f"{v:>20} (median of {len(args.seeds)}): {s['tokens_per_s_median']:,.0f} tokens/s, "
                  f"val {s['val_loss_median']:.4f} (full {s['full_val_loss_median']:.4f})")
        print(f"{'nanoGPT (reference)':>20}: {NANOGPT['ms_per_iter']} ms/iter, {NANOGPT['tokens_per_s']:,} tokens/s, "
              f"val {NANOGPT['val_loss']}")


if __name__ == "__main__":
    main()
