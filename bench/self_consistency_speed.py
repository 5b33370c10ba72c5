"""Self-consistency cost: K sampled continuations of one prompt sharing its prefill, against K separate runs.

Wang et al. 2023 sample K reasoning paths and vote; here the prompt is read once and its KV cache rows copied to
K rows (``decode(..., num_return_sequences=K)``), so K samples cost one prefill plus K-row decoding steps.
Variants, each timed end to end (prefill included; no eos, so every row makes all its tokens), median of
``--repeats`` runs, on the demo model when ``runs/demo/train/model`` exists (else a random one of its shape):

* ``one``: one sampled run (batch 1)
* ``shared``: K samples, one prefill (batch 1), then K rows
* ``batched``: K samples as K identical prompts in one batch (K prefills in one pass)
* ``separate``: K runs one after the other (what a harness without batching pays)

The ratios to ``one`` are printed; the target is ``shared`` <= 3x ``one`` for K = 8.

    python bench/self_consistency_speed.py --json
    python bench/self_consistency_speed.py --k 8 --prompt-len 200 --new-tokens 64 --repeats 5 --threads 2
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
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model

DEMO = Path("runs/demo/train/model")


def load(path: Path, device: str) -> tuple[torch.nn.Module, str]:
    if (path / "config.json").is_file():
        return load_model(path, device=device).eval(), str(path)
    torch.manual_seed(0)
    config = preset("llama-tiny", vocab_size=2048, block_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=128,
                    intermediate_size=384)
    return build_model(config).to(device).eval(), "random llama (the demo's shape)"


def run(model, prompts: list[list[int]], config: GenerationConfig, k: int = 1) -> None:
    for _ in decode(model, prompts, config, None, num_return_sequences=k):
        pass
    if model.tok_emb.weight.is_cuda:
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEMO)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, name = load(args.model, args.device)
    model = decode_layout(model)
    context = model.config.block_size
    prompt_len = min(args.prompt_len, context - args.new_tokens)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, model.config.vocab_size, (prompt_len,), generator=gen).tolist()
    config = GenerationConfig(max_new_tokens=args.new_tokens, do_sample=True, seed=0)
    seeded = [GenerationConfig(max_new_tokens=args.new_tokens, do_sample=True, seed=j) for j in range(args.k)]
    seconds = {
        "one": timed(lambda: run(model, [prompt], config), args.repeats),
        "shared": timed(lambda: run(model, [prompt], config, args.k), args.repeats),
        "batched": timed(lambda: run(model, [prompt] * args.k, config), args.repeats),
        "separate": timed(lambda: [run(model, [prompt], c) for c in seeded], args.repeats),
    }
    result = {"model": name, "device": args.device, "threads": args.threads, "k": args.k, "prompt_len": prompt_len,
              "new_tokens": args.new_tokens, "seconds": {k: round(v, 4) for k, v in seconds.items()},
              "ratio_to_one": {k: round(v / seconds["one"], 2) for k, v in seconds.items() if k != "one"},
              "target_met": seconds["shared"] <= 3 * seconds["one"]}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{name}, {args.device}, {args.threads} thread(s): prompt {prompt_len} tokens, {args.new_tokens} new, "
          f"K = {args.k}")
    for key, value in seconds.items():
        ratio = "" if key == "one" else f"  {value / seconds['one']:.2f}x one run"
        print(f"  {key:9s} {value * 1000:8.1f} ms{ratio}")
    print(f"target shared <= 3x one: {'met' if result['target_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
