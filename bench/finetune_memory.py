"""Peak memory of fine-tuning the GPT-2-small shape on CPU: LoRA against full fine-tuning.

    python bench/finetune_memory.py --json

A random GPT-2-small (124M parameters, vocab 50257) is saved once; each method then fine-tunes it for a few
steps on synthetic conversations in its own process, and reports that process's peak resident memory. Full
fine-tuning holds gradients and two AdamW moments for every weight; LoRA only for its small matrices.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lmstack.data.synth import synth
from lmstack.text.tokenizer import train_bpe
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["full", "lora"])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="finetune_memory_"))
    synth(out=root / "corpus", scale=0.1)
    texts = [m["content"] for line in (root / "corpus" / "sft_train.jsonl").read_text().splitlines()
             for m in json.loads(line)["messages"]]
    torch.manual_seed(0)
    save_model(build_model(preset("gpt2-small")), root / "base", train_bpe(texts, vocab_size=2048))
    rows = []
    for method in args.methods:
        cmd = [sys.executable, "-m", "lmstack", "finetune", "--model", str(root / "base"), "--data",
               str(root / "corpus" / "sft_train.jsonl"), "--out", str(root / method), "--method", method,
               "--max_iters", str(args.iters), "--batch_size", str(args.batch_size), "--max_len", str(args.max_len),
               "--eval_interval", str(args.iters), "--eval_iters", "1", "--lora.targets", "c_attn", "--json"]
        result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        rows.append({k: result[k] for k in ("method", "peak_memory_mb", "trainable_params", "trainable_fraction",
                                             "wall_s")})
        print(json.dumps(rows[-1]), file=sys.stderr)
    by = {r["method"]: r for r in rows}
    ratio = by["lora"]["peak_memory_mb"] / by["full"]["peak_memory_mb"] if {"lora", "full"} <= set(by) else None
    if args.json:
        print(json.dumps({"rows": rows, "lora_over_full": ratio}))
        return
    for r in rows:
        print(f"{r['method']:<6} peak {r['peak_memory_mb']:>8.0f} MB  trainable {r['trainable_params']:>11,} "
              f"({r['trainable_fraction']:.2%})  {r['wall_s']:.1f} s")
    if ratio:
        print(f"LoRA / full peak memory: {ratio:.2f}")


if __name__ == "__main__":
    main()
