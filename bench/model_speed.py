"""Forward + backward throughput of the GPT-2-small shape (12 layers, 768 wide, vocab 50257), batch 4 x 256.

Peers in the same process, on the same random weights and batch: `transformers`' GPT2LMHeadModel (fp32), and
lmstack in fp32 and with bf16 autocast (the trainer's `precision: bf16`). The issue's reference, nanoGPT's
model measured on this machine, is 186.5 tokens/s in fp32. Variants alternate in rounds; medians are reported.

    python bench/model_speed.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers

from lmstack.model import build_model, preset
from lmstack.model.hf import save_model

NANOGPT_TOKENS_PER_S = 186.5


def timed_step(forward, params, x, y, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = forward(x)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    loss.backward()
    for p in params:
        p.grad = None
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    ours = build_model(preset("gpt2-small"))
    with tempfile.TemporaryDirectory() as tmp:
        save_model(ours, tmp)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp)
    ours.train(), theirs.train()
    theirs.config.use_cache = False
    x = torch.randint(0, 50257, (args.batch, args.seq))
    y = torch.randint(0, 50257, (args.batch, args.seq))
    variants = {
        "transformers fp32": (lambda t: theirs(t).logits, list(theirs.parameters()), False),
        "lmstack fp32": (ours, list(ours.parameters()), False),
        "lmstack bf16": (ours, list(ours.parameters()), True),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _name, (fwd, params, bf16) in variants.items():  # warm-up
        timed_step(fwd, params, x, y, bf16)
    for r in range(args.rounds):
        for name, (fwd, params, bf16) in variants.items():
            times[name] += [timed_step(fwd, params, x, y, bf16) for _ in range(args.steps)]
        print(f"round {r}: " + ", ".join(f"{k} {statistics.median(v):.2f}s" for k, v in times.items()), file=sys.stderr)
    tokens = args.batch * args.seq
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    report = {"tokens_per_s": tps, "batch": args.batch, "seq": args.seq, "threads": torch.get_num_threads(),
              "ratio_fp32_vs_transformers": tps["lmstack fp32"] / tps["transformers fp32"],
              "ratio_bf16_vs_transformers": tps["lmstack bf16"] / tps["transformers fp32"],
              "ratio_fp32_vs_nanogpt_reference": tps["lmstack fp32"] / NANOGPT_TOKENS_PER_S,
              "ratio_bf16_vs_nanogpt_reference": tps["lmstack bf16"] / NANOGPT_TOKENS_PER_S}
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in tps.items():
            print(f"{k:>18}: {v:7.1f} tokens/s")
        print(f"{'nanoGPT reference':>18}: {NANOGPT_TOKENS_PER_S:7.1f} tokens/s")


if __name__ == "__main__":
    main()
