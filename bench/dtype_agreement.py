"""Greedy agreement of bf16 decoding with fp32 on the demo model: what ``--dtype bfloat16`` (and ``--dtype auto``
where it picks bf16) changes in the text, and its speed.

Prompts are the first words of the demo corpus' held-out QA passages and questions; each is decoded greedily in
fp32 (``decode_layout``, what ``--dtype float32`` runs) and in bf16 weights and cache. Reported: the share of
prompts whose continuations are identical, the share of token positions that agree, the mean number of tokens
before the first difference, and tokens/s of both (medians over the prompts).

    python bench/dtype_agreement.py --json
    python bench/dtype_agreement.py --model runs/demo/train/model --prompts 50 --new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.layout import decode_layout
from lmstack.model.hf import load_causal_lm
from lmstack.text.tokenizer import Tokenizer


def prompts_of(corpus: Path, tokenizer: Tokenizer, n: int) -> list[list[int]]:
    out = []
    for line in (corpus / "qa_test.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for text in (record["context"], record["question"]):
            ids = tokenizer.encode(text)[:24]
            if len(ids) >= 8:
                out.append(ids)
        if len(out) >= n:
            break
    return out[:n]


def run(model, prompt: list[int], config: GenerationConfig, eos: int | None) -> tuple[list[int], float]:
    start = time.perf_counter()
    tokens = [int(t) for t in decode(model, [prompt], config, eos)]
    return tokens, len(tokens) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/demo/train/model")
    parser.add_argument("--corpus", default="runs/demo/corpus")
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tokenizer = Tokenizer.load(args.model)
    fp32 = decode_layout(load_causal_lm(args.model).eval())
    bf16 = load_causal_lm(args.model, dtype=torch.bfloat16).eval()
    config = GenerationConfig(max_new_tokens=args.new_tokens)
    same, agree, prefix, speed = 0, [], [], {"float32": [], "bfloat16": []}
    for prompt in prompts_of(Path(args.corpus), tokenizer, args.prompts):
        a, sa = run(fp32, prompt, config, tokenizer.eos_id)
        b, sb = run(bf16, prompt, config, tokenizer.eos_id)
        speed["float32"].append(sa)
        speed["bfloat16"].append(sb)
        same += a == b
        n = max(len(a), len(b))
        agree.append(sum(x == y for x, y in zip(a, b)) / n)
        prefix.append(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))))
    report = {"model": args.model, "prompts": len(agree), "new_tokens": args.new_tokens,
              "identical_continuations": same / len(agree), "token_agreement": statistics.mean(agree),
              "mean_common_prefix": statistics.mean(prefix),
              "tokens_per_s": {k: statistics.median(v) for k, v in speed.items()},
              "threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps(report))
        return
    for k, v in report.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
