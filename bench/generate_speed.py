"""Decoding speed against ``transformers`` ``generate`` on the same weights, in the same process.

Greedy, a 16-token random prompt, 256 new tokens (no eos, so every run makes all of them), fp32 for the peer.
The peer loads the very model directory lmstack saved. Runs alternate lmstack and transformers and the
median tokens/s of ``--repeats`` runs is reported (prefill included), with its ratio to the peer's (and to
the peer's reference figure given with the task, ``ratio_to_reference``). lmstack variants:

* ``plain``: the decode loop on the model as loaded (fp32)
* ``eager``: what ``lmstack generate`` runs: the same loop after ``decode_layout`` (fp32)
* ``compile``: ``eager`` with the one-token step compiled by torch.compile (``--compile``); the first run,
  compiling included, is reported as ``first_run_s``
* ``bf16``: weights and cache in bfloat16 (half the memory traffic); ``bf16-compile``: both
* agreement with the peer: ``tokens_identical``, ``token_agreement`` (fraction of positions) and
  ``common_prefix`` (tokens before the first difference in any row)

    python bench/generate_speed.py --json
    python bench/generate_speed.py --configs tiny --variants eager compile --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch

from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.layout import decode_layout
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model
from lmstack.model.source import ModelSource

PROMPT_LEN, NEW_TOKENS = 16, 256
CONFIGS = {  # name: (model config, batch size)
    "tiny": (preset("tiny", vocab_size=65, block_size=1024), 1),
    "gpt2-small": (preset("gpt2-small"), 1),
    "tiny-b8": (preset("tiny", vocab_size=65, block_size=1024), 8),
}
REFERENCE = {"tiny": 1178, "gpt2-small": 32.3, "tiny-b8": 130}  # transformers tokens/s given with the task
VARIANTS = ["plain", "eager", "compile", "bf16", "bf16-compile"]


def lmstack_runner(folder: str, variant: str, prompts: torch.Tensor):
    model = load_model(folder, dtype=torch.bfloat16 if variant.startswith("bf16") else None).eval()
    if variant != "plain":
        decode_layout(model)
    source = ModelSource(model, compile=variant.endswith("compile"))
    config = GenerationConfig(max_new_tokens=NEW_TOKENS)
    return lambda: torch.stack(list(decode(source, prompts.tolist(), config)), dim=1)


def hf_runner(folder: str, prompts: torch.Tensor):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    mask = torch.ones_like(prompts)
    return lambda: model.generate(prompts, attention_mask=mask, do_sample=False, max_new_tokens=NEW_TOKENS,
                                  pad_token_id=0)[:, PROMPT_LEN:]


def timed(run) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def bench_config(name: str, variants: list[str], repeats: int) -> dict:
    config, batch = CONFIGS[name]
    torch.manual_seed(0)
    prompts = torch.randint(0, config.vocab_size, (batch, PROMPT_LEN))
    with tempfile.TemporaryDirectory() as folder:
        save_model(build_model(config), folder)
        runners = {"transformers": hf_runner(folder, prompts)}
        runners |= {v: lmstack_runner(folder, v, prompts) for v in variants}
        warmup = {k: timed(run) for k, run in runners.items()}  # compiles; first-touch of every weight
        seconds: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(repeats):
            for k, run in runners.items():
                seconds[k].append(timed(run)[0])
    reference = warmup["transformers"][1]
    result = {"batch": batch,
              "transformers_tokens_per_s": batch * NEW_TOKENS / statistics.median(seconds["transformers"])}
    for v in variants:
        out = warmup[v][1]
        assert out.shape == reference.shape, f"{name}/{v}: {tuple(out.shape)} tokens vs {tuple(reference.shape)}"
        tps = batch * NEW_TOKENS / statistics.median(seconds[v])
        result[v] = {"tokens_per_s": tps, "ratio": tps / result["transformers_tokens_per_s"],
                     "ratio_to_reference": tps / REFERENCE[name],
                     "tokens_identical": bool(torch.equal(out, reference)),
                     "token_agreement": (out == reference).float().mean().item(),
                     "common_prefix": int((out == reference).all(dim=0).cumprod(dim=0).sum()),
                     "first_run_s": warmup[v][0]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"threads": torch.get_num_threads(), "repeats": args.repeats, "prompt_tokens": PROMPT_LEN,
              "new_tokens": NEW_TOKENS, "transformers_reference_tokens_per_s": REFERENCE}
    for name in args.configs:
        print(f"{name}: running", file=sys.stderr, flush=True)
        report[name] = bench_config(name, args.variants, args.repeats)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'config':<11} {'variant':<13} {'lmstack tok/s':>14} {'transformers':>13} {'ratio':>6}  agreement"
          "  prefix  first run")
    for name in args.configs:
        r = report[name]
        for v in args.variants:
            x = r[v]
            print(f"{name:<11} {v:<13} {x['tokens_per_s']:>14,.1f} {r['transformers_tokens_per_s']:>13,.1f} "
                  f"{x['ratio']:>5.2f}x  {x['token_agreement']:>9.1%}  {x['common_prefix']:>6}  "
                  f"{x['first_run_s']:>7.1f} s")


if __name__ == "__main__":
    main()
