"""Passage encoding throughput (passages/s) of the all-MiniLM-L6-v2 shape (6 layers, 384 wide), batch 64.

Peers in the same process, on the same random weights and the same padded batches of mixed-length passages:
`transformers`' BertModel + mean pooling, and lmstack's Encoder + mean pooling (inference, fp32); plus
lmstack's end-to-end ``DualEncoder.encode`` (tokenising, length-sorted batching, pooling, normalising).
Variants alternate in rounds; medians are reported.

    python bench/dense_speed.py --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time

import torch
import transformers

from lmstack.text.tokenizer import train_bpe
from lmstack.model import preset
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.families.bert import build_encoder
from lmstack.model.heads import pool
from lmstack.model.hf import save_model
from lmstack.retrieval.dual_encoder import DualEncoder

WORDS = "the a river city king trade salt north bridge market old stone tower harbour winter festival".split()


def passages(n: int, seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(20, 120))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    texts = passages(args.passages)
    tok = train_bpe(texts, vocab_size=600)
    ours = build_encoder(preset("bert-mini", vocab_size=tok.vocab_size)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        save_model(ours, tmp)
        theirs = transformers.BertModel.from_pretrained(tmp, add_pooling_layer=False).eval()
    dual = DualEncoder(ours, tok, pooling="mean", max_len=args.max_len)
    batches = [encode_pairs(tok, texts[i:i + args.batch], max_len=args.max_len)
               for i in range(0, len(texts), args.batch)]

    def run_theirs() -> None:
        for b in batches:
            pool(theirs(**b).last_hidden_state, b["attention_mask"], "mean")

    def run_ours() -> None:
        for b in batches:
            pool(ours(**b), b["attention_mask"], "mean")

    variants = {"transformers BertModel": run_theirs, "lmstack Encoder": run_ours,
                "lmstack DualEncoder.encode": lambda: dual.encode(texts, batch_size=args.batch)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for fn in variants.values():  # warm-up
            fn()
        for r in range(args.rounds):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
    pps = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    report = {"passages_per_s": pps, "passages": len(texts), "tokens_per_passage": tokens / len(texts),
              "batch": args.batch, "max_len": args.max_len, "threads": torch.get_num_threads(),
              "ratio_vs_transformers": pps["lmstack Encoder"] / pps["transformers BertModel"]}
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in pps.items():
            print(f"{k:>28}: {v:8.1f} passages/s")


if __name__ == "__main__":
    main()
