"""``lmstack demo``: the whole core pipeline on the built-in corpus, ending in a Markdown report.

synth -> prepare (BPE tokenizer + shards) -> unigram baseline -> train -> eval -> decode (greedy, beam, sampled)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from lmstack.config import build, load_yaml, merge
from lmstack.data.prepare import prepare
from lmstack.data.synth import synth
from lmstack.data.tokenizer import Tokenizer
from lmstack.eval.perplexity import unigram_baseline
from lmstack.generate.api import GenerationConfig, generate
from lmstack.io import atomic_open
from lmstack.model.hf import load_model
from lmstack.train.config import TrainConfig
from lmstack.train.loop import train

CONFIG = Path(__file__).parent / "configs" / "demo.yaml"
DECODERS = {
    "greedy": GenerationConfig(max_new_tokens=40),
    "beam (4)": GenerationConfig(max_new_tokens=40, num_beams=4, length_penalty=1.0),
    "sampled (T=0.8, top-p 0.9)": GenerationConfig(max_new_tokens=40, do_sample=True, temperature=0.8, top_p=0.9,
                                                   seed=0),
}


def demo(out: Path = Path("runs/demo"), max_iters: int | None = None, vocab_size: int = 2048) -> dict:
    """Synthesise the corpus, train a tokenizer and a small model, evaluate, decode, and write report.md.

    Args:
        out: folder for every artefact of the run (corpus, data, model, report.md, loss.png)
        max_iters: training steps (default: the demo config's)
        vocab_size: BPE vocabulary size
    """
    out, timings, t0 = Path(out), {}, time.perf_counter()
    _say("1/5 synthesising the bilingual corpus")
    corpus = synth(out=out / "corpus")
    timings["synth"] = time.perf_counter() - t0
    _say("2/5 training a byte-level BPE tokenizer and writing token shards")
    data = prepare([out / "corpus" / "pretrain.jsonl"], out=out / "data", vocab_size=vocab_size, chat_markup=True)
    baseline = unigram_baseline(out / "data")
    timings["prepare"] = time.perf_counter() - t0 - sum(timings.values())
    _say(f"   unigram baseline: {baseline:.3f} nats/token (perplexity {math.exp(baseline):.1f})")
    _say("3/5 pretraining")
    overrides = {"data": str(out / "data"), "out": str(out / "train")}
    if max_iters:
        overrides |= {"max_iters": max_iters, "eval_interval": max(1, max_iters // 6)}
    cfg = build(TrainConfig, merge(load_yaml(CONFIG), overrides), str(CONFIG))
    result = train(cfg)
    timings["train"] = time.perf_counter() - t0 - sum(timings.values())
    _say("4/5 decoding")
    samples = decode_samples(out / "train" / "model", json.loads((out / "corpus" / "world.json").read_text()))
    timings["decode"] = time.perf_counter() - t0 - sum(timings.values())
    _say("5/5 writing the report")
    evals = [r for r in _read_jsonl(out / "train" / "metrics.jsonl") if "val_loss" in r]
    write_report(out / "report.md", corpus, data, baseline, evals, samples, timings, result)
    return {"report": str(out / "report.md"), "unigram_val_loss": baseline, "first_val_loss": evals[0]["val_loss"],
            "val_loss": result["val_loss"], "val_ppl": result["val_ppl"], "unigram_ppl": math.exp(baseline),
            "seconds": round(time.perf_counter() - t0, 1)}


def prompts_for(world: dict) -> list[str]:
    """Prompts whose continuations the corpus teaches: a fact and an arithmetic question, in both languages."""
    name = world["people"][0]["name"]
    return [f"{name['en']} lives in", f"{name['zh']}住在", "What is 23 + 48?\n", "19 + 35 等于多少？\n"]


def decode_samples(model_dir: Path, world: dict) -> list[dict]:
    model, tokenizer = load_model(model_dir).eval(), Tokenizer.load(model_dir)
    rows = []
    for prompt in prompts_for(world):
        row = {"prompt": prompt}
        for name, config in DECODERS.items():
            row[name] = generate(model, tokenizer, prompt, config)
        rows.append(row)
        _say(f"   {prompt!r} -> {row['greedy']!r}")
    return rows


def write_report(path: Path, corpus: dict, data: dict, baseline: float, evals: list[dict], samples: list[dict],
                 timings: dict, result: dict) -> None:
    lines = ["# lmstack demo report", "",
             f"Corpus: {corpus['documents']:,} documents, {corpus['text_bytes']:,} bytes (English and Chinese). "
             f"Tokens: {data.get('train_tokens', 0):,} train / {data.get('val_tokens', 0):,} validation, "
             f"vocabulary {data.get('vocab_size')}. Model: {result['params']:,} parameters, "
             f"{result['iters']} steps, {result['tokens']:,} tokens.", "",
             "## Validation loss against the unigram baseline", "",
             "| step | val loss (nats/token) | val perplexity |", "|---:|---:|---:|",
             f"| unigram baseline | {baseline:.3f} | {math.exp(baseline):.1f} |"]
    lines += [f"| {r['iter']} | {r['val_loss']:.3f} | {r['val_ppl']:.2f} |" for r in evals]
    lines += ["", "![loss curve](train/loss.png)", "", "## The same prompts, three decoders", ""]
    for row in samples:
        lines += [f"**Prompt:** `{row['prompt']!r}`", ""]
        lines += [f"- *{name}:* {json.dumps(text, ensure_ascii=False)}" for name, text in row.items() if name != "prompt"]
        lines.append("")
    lines += ["## Time per stage (seconds)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    with atomic_open(path) as f:
        f.write("\n".join(lines) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
