"""Controllable generation on the synthetic world, in the shape of the DExperts paper's table (Liu et al. 2021,
table 2): the base model, control codes (CTRL), DExperts over an alpha sweep and contrastive decoding, each
continuing the world's neutral prompts (steer_prompts_test.jsonl), K samples of 20-30 tokens per prompt (top-p
0.9, fixed seeds).

* success: % of continuations the attribute classifier (``lmstack train-classifier``, sentiment) labels as the
  target, towards positive and towards negative;
* fluency: perplexity of the continuations under the base model, exp(mean NLL per token given the prompt);
* diversity: distinct-1/2/3, unique n-grams / n-grams over one prompt's K samples (model tokens), averaged over
  prompts;
* speed: generated tokens/s relative to plain sampling with the base model (one process, the same batching:
  one prompt's K samples share a prefill).

Everything it trains is built here from the demo model (``make demo``: runs/demo/train/model) in a few CPU minutes:

    python bench/steering.py --out runs/bench_steering                       # all rows, 40 prompts x 25
    python bench/steering.py --prompts 10 --samples 10 --json                # quicker
    python bench/steering.py --prompts 20 --alphas 1 2 4 --nucleus 1.0       # DExperts without the base nucleus

DExperts rows use the paper's nucleus on the base (``--nucleus 0.9``: the sampler then leaves the mixture whole)
and / or none (``--nucleus 1.0``: the sampler's top-p 0.9 cuts the mixture instead).

The classifier, the control-code model (full fine-tune on every attribute text behind its tag) and the two
experts (full fine-tunes on the positive / negative reviews, untagged) are trained with the CLI's own
functions; a run reuses what an earlier one left in --out. Contrastive decoding subtracts --amateur (default:
runs/draft/model, a 1 x 64 model on the demo tokenizer) from the base model; it is skipped when that is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from lmstack.adapt.control_codes import control_ids, control_prefix, read_control_codes, train_control
from lmstack.data.synth import synth
from lmstack.eval.attribute_classifier import AttributeClassifier, train_classifier
from lmstack.generate.api import pieces
from lmstack.generate.config import GenerationConfig
from lmstack.generate.loading import load_for_decoding
from lmstack.generate.combine import contrastive, dexperts
from lmstack.model.hf import load_causal_lm
from lmstack.model.scoring import token_logprobs
from lmstack.text.stream import TextStream


def distinct(samples: list[list[int]], n: int) -> float:
    """Unique n-grams / n-grams over ``samples`` (Li et al. 2016's distinct-n), 0 when there are none."""
    grams = [tuple(s[i:i + n]) for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def sample(source, tokenizer, prompts: list[list[int]], k: int, seed: int, top_p: float = 0.9
           ) -> tuple[list[list[list[int]]], list[list[str]], float]:
    """K sampled continuations of 20-30 tokens (ids and texts) of each prompt, and the tokens made per second."""
    out_ids, out_texts, tokens, seconds = [], [], 0, 0.0
    for i, ids in enumerate(prompts):
        config = GenerationConfig(max_new_tokens=30, min_new_tokens=20, do_sample=True, top_p=top_p,
                                  seed=seed + 1000 * i)
        streams = [TextStream(tokenizer, []) for _ in range(k)]
        start = time.perf_counter()
        for _ in pieces(source, tokenizer, [ids], config, streams, num_return_sequences=k):
            pass
        seconds += time.perf_counter() - start
        out_ids.append([list(s.ids) for s in streams])
        out_texts.append([s.text for s in streams])
        tokens += sum(len(s.ids) for s in streams)
    return out_ids, out_texts, tokens / seconds


@torch.no_grad()
def perplexity(model, contexts: list[list[int]], samples: list[list[list[int]]]) -> float:
    """exp(mean NLL per continuation token) under ``model``, each continuation after its own prompt."""
    ctx = [c for c, rows in zip(contexts, samples) for r in rows if r]
    cont = [r for rows in samples for r in rows if r]
    rows = token_logprobs(model, ctx, cont)
    nll = -torch.cat(rows).double()
    return math.exp(nll.mean().item())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_steering"))
    ap.add_argument("--model", type=Path, default=Path("runs/demo/train/model"))
    ap.add_argument("--amateur", type=Path, default=Path("runs/draft/model"))
    ap.add_argument("--prompts", type=int, default=40, help="neutral prompts used (of steer_prompts_test.jsonl)")
    ap.add_argument("--samples", type=int, default=25, help="continuations per prompt")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--nucleus", type=float, nargs="+", default=[0.9, 1.0],
                    help="DExperts' top-p on the base (paper: 0.9); at 1.0 the sampler's top-p 0.9 cuts the mixture")
    ap.add_argument("--train-iters", type=int, default=300, help="steps of each fine-tune (control, experts)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out, timings = args.out, {}
    data = out / "synth"
    if not (data / "attributes_train.jsonl").is_file():
        synth(data, seed=0, scale=1.0)

    def once(name: str, marker: Path, run) -> None:
        if not marker.exists():
            start = time.perf_counter()
            run()
            timings[name] = round(time.perf_counter() - start, 1)
    once("classifier", out / "classifier" / "config.json", lambda: train_classifier(
        data / "attributes_train.jsonl", out / "classifier", "sentiment", tokenizer=args.model, epochs=2,
        seed=args.seed))
    once("control", out / "control" / "model" / "control_codes.json", lambda: train_control(
        data / "attributes_train.jsonl", args.model, out / "control", max_iters=args.train_iters, seed=args.seed,
        overwrite=True))
    for label in ("positive", "negative"):
        once(f"expert_{label}", out / f"expert_{label}" / "model" / "config.json", lambda label=label: train_control(
            data / "attributes_train.jsonl", args.model, out / f"expert_{label}", codes=[f"sentiment={label}"],
            tag=False, max_iters=args.train_iters, seed=args.seed, overwrite=True))

    judge = AttributeClassifier.load(out / "classifier")
    base, tokenizer = load_for_decoding(args.model, dtype="float32")
    scorer = load_causal_lm(args.model).eval()
    ctrl, _ = load_for_decoding(out / "control" / "model", dtype="float32")
    pos, _ = load_for_decoding(out / "expert_positive" / "model", dtype="float32")
    neg, _ = load_for_decoding(out / "expert_negative" / "model", dtype="float32")
    codes = read_control_codes(out / "control" / "model")
    rows = [json.loads(line) for line in (data / "steer_prompts_test.jsonl").read_text().splitlines()][:args.prompts]
    prompts = [tokenizer.encode(r["prompt"], specials=False) for r in rows]

    methods: list[tuple[str, str | None, object, list[list[int]]]] = [("base (sampling, top-p 0.9)", None, base,
                                                                        prompts)]
    for target in ("positive", "negative"):
        tag = control_prefix(codes, f"sentiment={target}")
        methods.append((f"control code <sentiment={target}>", target, ctrl,
                        [control_ids(tokenizer, tag, p) for p in prompts]))
    for nucleus in args.nucleus:
        for alpha in args.alphas:
            for sign, target in ((1, "positive"), (-1, "negative")):
                methods.append((f"DExperts alpha={sign * alpha:g}, base top-p {nucleus:g}", target,
                                dexperts(base, pos, neg, sign * alpha, top_p=nucleus), prompts))
    methods.append(("contrastive: positive expert - negative expert (plausibility 0.1)", "positive",
                    contrastive(pos, neg, 0.1), prompts))
    if (args.amateur / "config.json").is_file():
        amateur, _ = load_for_decoding(args.amateur, dtype="float32")
        methods.append((f"contrastive: base - amateur {args.amateur} (plausibility 0.1)", None,
                        contrastive(base, amateur, 0.1), prompts))

    table, base_speed = [], None
    for name, target, source, inputs in methods:
        # DExperts with a base nucleus cuts it itself: the sampler must not cut the mixture again
        top_p = 1.0 if name.startswith("DExperts") and source.top_p < 1 else 0.9
        ids, texts, speed = sample(source, tokenizer, inputs, args.samples, args.seed, top_p)
        base_speed = base_speed or speed
        labels = [judge.predict(t) for t in texts]
        flat = [lab for row in labels for lab in row]
        positive = 100 * sum(lab == "positive" for lab in flat) / len(flat)
        table.append({"method": name, "target": target, "positive_%": round(positive, 1),
                      "negative_%": round(100 - positive, 1),
                      "success_%": None if target is None else round(positive if target == "positive"
                                                                     else 100 - positive, 1),
                      "ppl_base": round(perplexity(scorer, prompts, ids), 2),
                      **{f"dist_{n}": round(sum(distinct(r, n) for r in ids) / len(ids), 3) for n in (1, 2, 3)},
                      "speed_x": round(speed / base_speed, 2), "example": texts[0][0]})
    result = {"prompts": len(prompts), "samples": args.samples, "train_seconds": timings, "table": table}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print(f"{len(prompts)} neutral prompts x {args.samples} samples, 20-30 tokens, top-p 0.9; trained: {timings}")
    print(f"{'method':66} {'pos%':>6} {'neg%':>6} {'ppl':>7} {'d-1':>6} {'d-2':>6} {'d-3':>6} {'speed':>6}")
    for r in table:
        print(f"{r['method']:66} {r['positive_%']:6.1f} {r['negative_%']:6.1f} {r['ppl_base']:7.2f} "
              f"{r['dist_1']:6.3f} {r['dist_2']:6.3f} {r['dist_3']:6.3f} {r['speed_x']:6.2f}")


if __name__ == "__main__":
    main()
