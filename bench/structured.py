"""Structured outputs: how often constrained decoding gives valid JSON, and what the grammar costs per token.

* validity: every schema of ``tests/generate/schemas.json`` (nested objects, arrays with min/maxItems, enums,
  const, bounded numbers, strings with lengths / patterns / formats, anyOf / oneOf / allOf, $defs / $ref), each
  decoded from ``--prompts`` prompts, greedy and sampled, all schemas in one batch: ``completed`` rows ended (an
  end token within ``--max-new-tokens``), ``valid`` rows parse and pass ``jsonschema.validate``. A completed row
  that is not valid would be a bug; a row that runs out of tokens (a model rambling inside a free string) is the
  budget's, reported apart.
* speed: tokens/s decoding the same prompts with and without a schema (median of ``--repeats`` runs), batch 1
  and batch 8; without a schema eos is ignored, so every row makes ``--speed-tokens`` tokens; with one a row
  counts its tokens up to its end (a batch runs until its longest row ends, so ``ms/step`` compares the
  per-step cost like for like). ``mask_us``: the grammar's time per row per step (mask + advance), timed
  apart. ``compile_ms``: compiling a schema (cold, then from the cache).

The model is the demo's (``runs/demo/train/model``) when it exists, else a tiny random one with its own BPE.

    python bench/structured.py
    python bench/structured.py --model runs/demo/train/model --repeats 5 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jsonschema
import torch

from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.grammar import Grammar
from lmstack.generate.layout import decode_layout
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model
from lmstack.text.tokenizer import Tokenizer, train_bpe

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tests" / "generate" / "schemas.json"
DEMO = ROOT / "runs" / "demo" / "train" / "model"
PROMPTS = ["The river town of Kell", "Answer in JSON:", "凯尔河镇", "Once upon a time", "{", "hello",
           "The salt traders", "Q: who rules the valley?"]
SPEED_SCHEMA = {"title": "Answer", "type": "object", "properties": {
    "answer": {"type": "string", "maxLength": 40}, "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "sources": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 99}, "maxItems": 3}},
    "required": ["answer", "confidence", "sources"], "additionalProperties": False}


def load(model: str | None) -> tuple[torch.nn.Module, Tokenizer, str]:
    folder = Path(model) if model else DEMO
    if folder.is_dir():
        return decode_layout(load_model(folder).eval()), Tokenizer.load(folder), str(folder)
    text = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。"] * 50
    tokenizer = train_bpe(text + [SCHEMAS.read_text(encoding="utf-8")] * 5, vocab_size=500)
    torch.manual_seed(0)
    net = build_model(preset("gpt2-tiny", vocab_size=tokenizer.vocab_size, block_size=256)).eval()
    return decode_layout(net), tokenizer, "random gpt2-tiny (no demo model)"


def run(net, tokenizer: Tokenizer, prompts: list[list[int]], grammars: list[Grammar | None],
        config: GenerationConfig) -> tuple[list[list[int]], list[bool], float, int]:
    """Each row's tokens up to its end, whether it ended, the seconds decoding took and its steps."""
    constraints = [None if g is None else g.constraint() for g in grammars]
    start = time.perf_counter()
    steps = torch.stack(list(decode(net, prompts, config, tokenizer.eos_id, constraints)), dim=1).tolist()
    seconds = time.perf_counter() - start
    eos = tokenizer.eos_id
    return [r[:r.index(eos)] if eos in r else r for r in steps], [eos in r for r in steps], seconds, len(steps[0])


def validity(net, tokenizer: Tokenizer, schemas: list[dict], n_prompts: int, max_new_tokens: int) -> list[dict]:
    grammars = [Grammar.from_json_schema(s, tokenizer, {tokenizer.eos_id}) for s in schemas]
    rows = []
    for mode, config in [("greedy", GenerationConfig(max_new_tokens=max_new_tokens)),
                         ("sampled", GenerationConfig(max_new_tokens=max_new_tokens, do_sample=True, seed=0)),
                         ("sampled t=1.5", GenerationConfig(max_new_tokens=max_new_tokens, do_sample=True, seed=1,
                                                            temperature=1.5))]:
        completed = valid = total = 0
        for k in range(n_prompts):
            prompts = [tokenizer.encode(PROMPTS[(k + i) % len(PROMPTS)]) for i in range(len(schemas))]
            outs, ended, _, _ = run(net, tokenizer, prompts, grammars, config)
            for schema, ids, done in zip(schemas, outs, ended):
                total += 1
                completed += done
                try:
                    jsonschema.validate(json.loads(tokenizer.decode(ids)), schema)
                    valid += 1
                except (json.JSONDecodeError, jsonschema.ValidationError):
                    pass
        rows.append({"mode": mode, "rows": total, "completed": completed, "valid": valid,
                     "valid_rate": round(valid / total, 4), "valid_of_completed": round(valid / max(completed, 1), 4)})
    return rows


def speed(net, tokenizer: Tokenizer, batch: int, new_tokens: int, repeats: int) -> dict:
    prompts = [tokenizer.encode(PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
    grammar = Grammar.from_json_schema(SPEED_SCHEMA, tokenizer, {tokenizer.eos_id})
    free_config = GenerationConfig(max_new_tokens=new_tokens)
    out = {"batch": batch}
    list(decode(net, prompts, free_config, None))  # warm-up
    rates: dict[str, list[float]] = {"free": [], "schema": []}
    step_ms: dict[str, list[float]] = {"free": [], "schema": []}
    for _ in range(repeats):  # the two alternate, so a busy machine slows both alike
        start = time.perf_counter()
        steps = len(list(decode(net, prompts, free_config, None)))  # eos ignored: every row makes new_tokens
        seconds = time.perf_counter() - start
        rates["free"].append(batch * steps / seconds)
        step_ms["free"].append(1000 * seconds / steps)
        # a row's tokens up to and with its end token; the batch runs until its longest row ends
        outs, _, seconds, steps = run(net, tokenizer, prompts, [grammar] * batch, free_config)
        rates["schema"].append(sum(len(o) + 1 for o in outs) / seconds)
        step_ms["schema"].append(1000 * seconds / steps)
    for name in rates:
        out[f"{name}_tokens_per_s"] = round(statistics.median(rates[name]), 1)
        out[f"{name}_step_ms"] = round(statistics.median(step_ms[name]), 3)
    out["ratio"] = round(out["schema_tokens_per_s"] / out["free_tokens_per_s"], 3)
    return out


def grammar_cost(net, tokenizer: Tokenizer, repeats: int) -> dict:
    """Microseconds per row per step spent in the grammar (mask + advance), and schema compile times."""
    grammar = Grammar.from_json_schema(SPEED_SCHEMA, tokenizer, {tokenizer.eos_id})
    outs, _, _, _ = run(net, tokenizer, [tokenizer.encode(PROMPTS[0])], [grammar], GenerationConfig(max_new_tokens=200))
    path = outs[0] + [tokenizer.eos_id]
    width = net.config.vocab_size
    times = []
    for _ in range(repeats):
        constraint, scores = grammar.constraint(), torch.zeros(1, width)
        start = time.perf_counter()
        for token in path:
            constraint.mask(scores)
            constraint.advance(token)
        times.append((time.perf_counter() - start) / len(path))
    schema = {**SPEED_SCHEMA, "title": f"cold-{time.time()}"}  # a key the cache has not seen
    start = time.perf_counter()
    Grammar.from_json_schema(schema, tokenizer, {tokenizer.eos_id})
    cold = time.perf_counter() - start
    start = time.perf_counter()
    Grammar.from_json_schema(schema, tokenizer, {tokenizer.eos_id})
    warm = time.perf_counter() - start
    return {"mask_us": round(1e6 * statistics.median(times), 1), "path_tokens": len(path),
            "compile_ms_cold": round(1000 * cold, 2), "compile_ms_cached": round(1000 * warm, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the demo model, else a random one)")
    ap.add_argument("--prompts", type=int, default=2, help="prompts per schema and mode in the validity sweep")
    ap.add_argument("--max-new-tokens", type=int, default=200, help="budget per row in the validity sweep")
    ap.add_argument("--speed-tokens", type=int, default=128, help="new tokens per row in the speed runs")
    ap.add_argument("--repeats", type=int, default=3, help="runs per speed figure (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, tokenizer, name = load(args.model)
    schemas = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    result = {"model": name, "vocab": tokenizer.vocab_size, "schemas": len(schemas),
              "validity": validity(net, tokenizer, schemas, args.prompts, args.max_new_tokens),
              "speed": [speed(net, tokenizer, b, args.speed_tokens, args.repeats) for b in (1, 8)],
              "grammar": grammar_cost(net, tokenizer, args.repeats)}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print(f"model: {name} (vocab {tokenizer.vocab_size}), {len(schemas)} schemas")
    print(f"{'mode':<14} {'rows':>5} {'completed':>9} {'valid':>6} {'valid rate':>10} {'valid/completed':>15}")
    for r in result["validity"]:
        print(f"{r['mode']:<14} {r['rows']:>5} {r['completed']:>9} {r['valid']:>6} {r['valid_rate']:>10.1%} "
              f"{r['valid_of_completed']:>15.1%}")
    print(f"\n{'batch':>5} {'free tok/s':>11} {'schema tok/s':>13} {'ratio':>6} {'free ms/step':>13} "
          f"{'schema ms/step':>15}")
    for r in result["speed"]:
        print(f"{r['batch']:>5} {r['free_tokens_per_s']:>11.1f} {r['schema_tokens_per_s']:>13.1f} {r['ratio']:>6.3f} "
              f"{r['free_step_ms']:>13.3f} {r['schema_step_ms']:>15.3f}")
    g = result["grammar"]
    print(f"\ngrammar per row per step: {g['mask_us']} us (mask + advance, over {g['path_tokens']} tokens); "
          f"compile: {g['compile_ms_cold']} ms cold, {g['compile_ms_cached']} ms cached")


if __name__ == "__main__":
    main()
