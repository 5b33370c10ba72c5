"""Greedy decoding speed of a T5 encoder-decoder: lmstack's ``decode`` (encoder once, cross-attention K/V cached once,
a self-attention KV cache for the decoder) vs ``transformers.generate`` on the same random weights, fp32 on the CPU.

The model is built in-process (``--preset``, default t5-tiny, vocabulary 4096) and saved once so that transformers
loads identical weights; both decode the same random input of ``--input-len`` tokens for ``--new-tokens`` tokens
(no eos), best of ``--repeats`` alternating runs after a warm-up, and the outputs are checked to be token-identical.

    OMP_NUM_THREADS=1 python bench/t5_decode.py
    python bench/t5_decode.py --preset t5-small --batch 4 --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import transformers

from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.layout import decode_layout
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model


def interleaved(repeats: int, fns: list) -> list[tuple[float, list[list[int]]]]:
    """Best time and output of each function, runs alternating (a shared machine's load hits both alike)."""
    for fn in fns:
        fn()  # warm-up
    best = [(float("inf"), None)] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            out = fn()
            best[i] = min(best[i], (time.perf_counter() - start, out), key=lambda r: r[0])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="t5-tiny")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_model(preset(args.preset, vocab_size=args.vocab, dropout=0.0)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        theirs = transformers.T5ForConditionalGeneration.from_pretrained(save_model(model, tmp)).eval()
    decode_layout(model)  # as lmstack generate loads it (load_for_decoding)
    x = torch.randint(0, args.vocab, (args.batch, args.input_len), generator=torch.Generator().manual_seed(1))
    config = GenerationConfig(max_new_tokens=args.new_tokens)

    def ours() -> list[list[int]]:
        return torch.stack(list(decode(model, x.tolist(), config)), dim=1).tolist()

    @torch.inference_mode()
    def hf() -> list[list[int]]:
        out = theirs.generate(x, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                              decoder_start_token_id=0, pad_token_id=0, eos_token_id=None)
        return out[:, 1:].tolist()

    (t_ours, a), (t_hf, b) = interleaved(args.repeats, [ours, hf])
    tokens = args.batch * args.new_tokens
    result = {"preset": args.preset, "params": model.num_params(), "batch": args.batch, "input_len": args.input_len,
              "new_tokens": args.new_tokens, "threads": torch.get_num_threads(),
              "lmstack_tokens_per_s": round(tokens / t_ours, 1), "transformers_tokens_per_s": round(tokens / t_hf, 1),
              "speedup": round(t_hf / t_ours, 2), "identical": a == b}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
