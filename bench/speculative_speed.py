"""Speculative decoding speed: the demo model drafted by a smaller model trained here, and by prompt lookup on a
retrieval-augmented prompt; greedy, output identical to plain greedy (checked), acceptance rate, tokens/s ratio.

The draft is trained once (``lmstack train`` with the demo config at 1 x 64, on the demo's shards) into
``--draft-dir`` unless it exists. Each setting decodes the same prompts with ``generate`` (the Python API a user
calls), alternating with plain greedy, median of ``--repeats``.

    python bench/speculative_speed.py --json
    python bench/speculative_speed.py --threads 1 --new-tokens 128 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from lmstack.generate.api import generate, pieces
from lmstack.generate.config import GenerationConfig
from lmstack.generate.layout import decode_layout
from lmstack.generate.speculative import DraftModel, PromptLookup, SpeculativeStats
from lmstack.model.hf import load_model
from lmstack.text.stream import TextStream
from lmstack.text.tokenizer import Tokenizer

DEMO = Path("runs/demo")


def train_draft(out: Path, data: Path) -> None:
    cmd = [sys.executable, "-m", "lmstack", "train", "--config", "lmstack/configs/demo.yaml", "--data", str(data),
           "--out", str(out), "--model.n_layer", "1", "--model.n_embd", "64", "--model.n_head", "2",
           "--model.n_kv_head", "1", "--max-iters", "800", "--overwrite"]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True)


def rag_prompts(corpus: Path, n: int) -> list[str]:
    """A retrieved passage, a question about it and "Answer:": the answer copies the passage (where lookup pays)."""
    out = []
    for line in (corpus / "qa_test.jsonl").read_text(encoding="utf-8").splitlines()[:n]:
        q = json.loads(line)
        out.append(f"{q['context']}\nQuestion: {q['question']}\nAnswer:")
    return out


def timed(model, tok, prompt: str, config: GenerationConfig, drafter=None) -> tuple[float, list[int], dict]:
    stats = SpeculativeStats() if drafter is not None else None
    stream = TextStream(tok, [])
    start = time.perf_counter()
    for _ in pieces(model, tok, [prompt], config, [stream], drafter=drafter, stats=stats):
        pass
    return time.perf_counter() - start, list(stream.ids), stats.as_dict() if stats else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEMO / "train" / "model")
    ap.add_argument("--draft-dir", type=Path, default=Path("runs/draft"))
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not (args.draft_dir / "model" / "model.safetensors").is_file():
        train_draft(args.draft_dir, DEMO / "data")
    model, tok = decode_layout(load_model(args.model).eval()), Tokenizer.load(args.model)
    draft = decode_layout(load_model(args.draft_dir / "model").eval())
    config = GenerationConfig(max_new_tokens=args.new_tokens)
    corpus = DEMO / "corpus"
    stories = [json.loads(line)["text"][:120] for line in
               (corpus / "pretrain.jsonl").read_text(encoding="utf-8").splitlines()[:args.prompts * 40:40]]
    suites = {"story prompts": stories, "passage + copy prompts": rag_prompts(corpus, args.prompts)}
    settings = {f"draft 1x64, k={k}": (lambda k=k: DraftModel(draft, k)) for k in (2, 3, 4)}
    settings |= {f"prompt lookup n<=3, k={k}": (lambda k=k: PromptLookup(3, k)) for k in (4, 8)}
    generate(model, tok, "warm up", max_new_tokens=8)
    rows = []
    for suite, prompts in suites.items():
        for name, make in settings.items():
            ratios, same, stats = [], True, []
            for prompt in prompts:
                plain_t, spec_t = [], []
                for _ in range(args.repeats):
                    t, ref, _ = timed(model, tok, prompt, config)
                    plain_t.append(t)
                    t, out, st = timed(model, tok, prompt, config, make())
                    spec_t.append(t)
                    same &= out == ref
                stats.append(st)
                ratios.append(statistics.median(plain_t) / statistics.median(spec_t))
            drafted = sum(s["drafted"] for s in stats)
            rows.append({"prompts": suite, "setting": name, "speedup": round(statistics.median(ratios), 2),
                         "acceptance": round(sum(s["accepted"] for s in stats) / drafted, 3) if drafted else 0.0,
                         "tokens_per_pass": round(statistics.mean(s["tokens_per_pass"] for s in stats), 2),
                         "identical": same})
    if args.json:
        print(json.dumps({"threads": args.threads, "new_tokens": args.new_tokens, "rows": rows}))
        return
    print("| prompts | setting | speed-up vs greedy | acceptance | tokens per target pass | identical |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['prompts']} | {r['setting']} | {r['speedup']}x | {r['acceptance']} | {r['tokens_per_pass']} | "
              f"{r['identical']} |")


if __name__ == "__main__":
    main()
