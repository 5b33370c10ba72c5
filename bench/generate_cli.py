"""Decoding speed through the command line, as a user runs it: ``lmstack generate`` against a transformers
script, and llama.cpp when one is installed, on the same weights, back to back.

Each engine runs as a fresh process, greedy, a 16-token prompt, with every new token forced (eos forbidden).
A run of 288 new tokens minus a run of 32 cancels start-up (imports, loading, the first passes): per-token
speed = 256 / (t288 - t32); start-up = t32 - 32 x per-token time. Medians of ``--repeats`` alternating runs. On a
busy host a tiny model's 256 tokens take less time than start-up varies by: ``--long 1008`` then measures 976.
Models have random weights and the bench's own byte-level BPE tokenizer (vocab 2048, trained on the built-in
corpus), so nothing is downloaded:

* ``tiny``: GPT-2, 4 x 128 (the in-process bench's tiny shape); ``gpt2-small``: GPT-2, 12 x 768
* ``llama-demo``: the demo model's Llama shape (4 x 128, GQA 4/2, ~1 M); ``llama-small``: Llama 12 x 768 (86.5 M)

llama.cpp (``--llama-cpp``) needs llama-cpp-python (``import llama_cpp``) and llama.cpp's
``convert_hf_to_gguf.py`` (``--convert``, or found inside the llama_cpp package's vendored source); the bench
builds neither and skips llama.cpp when either is missing. Same threads (``--threads``), f32 and bf16 GGUF.

    python bench/generate_cli.py --json
    python bench/generate_cli.py --configs tiny --long 1008 --repeats 5
    python bench/generate_cli.py --configs gpt2-small --repeats 5
    python bench/generate_cli.py --configs llama-demo llama-small --llama-cpp --threads 2
    python bench/generate_cli.py --configs tiny --lmstack-flags --dtype float32
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

from lmstack.data.synth import generate_documents
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe

SHORT, PROMPT_TOKENS = 32, 16
_LLAMA = dict(family="llama", bias=False, activation="silu", tie_embeddings=True, block_size=1024, vocab_size=2048)
CONFIGS = {
    "tiny": dict(family="gpt2", n_layer=4, n_head=4, n_embd=128, block_size=1024, bias=False,
                 activation="gelu", vocab_size=2048),
    "gpt2-small": dict(family="gpt2", n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=2048),
    "llama-demo": dict(**_LLAMA, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, intermediate_size=384),
    "llama-small": dict(**_LLAMA, n_layer=12, n_head=12, n_kv_head=12, n_embd=768, intermediate_size=2048),
}

HF_SCRIPT = """
import sys, torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
folder, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
tok = PreTrainedTokenizerFast(tokenizer_file=folder + "/tokenizer.json")
model = AutoModelForCausalLM.from_pretrained(folder).eval()
ids = tok(prompt, return_tensors="pt").input_ids
out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                     min_new_tokens=n, pad_token_id=0, eos_token_id=2)
print(tok.decode(out[0, ids.size(1):]))
"""

LLAMA_CPP_SCRIPT = """
import sys, llama_cpp
path, prompt, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_ctx=1024, verbose=False)
eos = llm.token_eos()
out = llm(prompt, max_tokens=n, temperature=0.0, top_k=1, logit_bias={eos: -1e9})
print(out["choices"][0]["text"])
"""


def build_folder(name: str, tokenizer, folder: Path) -> None:
    import torch

    torch.manual_seed(0)
    save_model(build_model(preset("tiny", **CONFIGS[name])).eval(), folder, tokenizer)


def prompt_of(tokenizer) -> str:
    """A 16-token prompt from the built-in corpus that re-encodes to exactly 16 tokens."""
    for record in generate_documents(seed=1, scale=0.05):
        ids = tokenizer.encode(record["text"])
        for end in range(PROMPT_TOKENS, min(len(ids), 64)):
            text = tokenizer.decode(ids[end - PROMPT_TOKENS:end])
            if len(tokenizer.encode(text)) == PROMPT_TOKENS:
                return text
    raise SystemExit("no 16-token prompt found")


def run(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])} ...: exit {done.returncode}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def engines(folder: Path, prompt: str, args, gguf: dict[str, Path]) -> dict[str, callable]:
    py = sys.executable
    lm = [py, "-m", "lmstack", "generate", prompt, "--model", str(folder), "--json", *args.lmstack_flags]
    out = {"lmstack": lambda n: [*lm, "--max-new-tokens", str(n), "--min-new-tokens", str(n)],
           "transformers": lambda n: [py, "-c", HF_SCRIPT, str(folder), prompt, str(n)]}
    for precision, path in gguf.items():
        out[f"llama.cpp-{precision}"] = (
            lambda n, p=path: [py, "-c", LLAMA_CPP_SCRIPT, str(p), prompt, str(n), str(args.threads)])
    return out


def text_of(engine: str, stdout: str) -> str:
    return json.loads(stdout)["completion"] if engine == "lmstack" else stdout.rstrip("\n")


def converter(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    found = list(Path(spec.origin).parent.rglob("convert_hf_to_gguf.py"))
    return found[0] if found else None


# llama.cpp's converter recognises a BPE tokenizer by a hash of how it splits a probe text and refuses one it does
# not know; ours is byte-level BPE with GPT-2's pre-tokenizer regex, which llama.cpp calls "gpt-2", so say so.
CONVERT = """
import runpy, sys
from pathlib import Path
script = sys.argv[1]
sys.path[:0] = [str(Path(script).parent), str(Path(script).parent / "gguf-py")]
import conversion.base
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv = [script, *sys.argv[2:]]
runpy.run_path(script, run_name="__main__")
"""


def convert(folder: Path, script: Path, precision: str) -> Path:
    out = folder.parent / f"{folder.name}-{precision}.gguf"
    done = subprocess.run([sys.executable, "-c", CONVERT, str(script), str(folder), "--outfile", str(out),
                           "--outtype", precision], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"convert_hf_to_gguf.py {folder}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return out


def bench(name: str, tokenizer, prompt: str, args, env: dict, root: Path) -> dict:
    folder = root / name
    build_folder(name, tokenizer, folder)
    gguf = {}
    if args.llama_cpp:
        script = converter(args.convert)
        if importlib.util.find_spec("llama_cpp") is None or script is None:
            print("llama.cpp: llama-cpp-python or convert_hf_to_gguf.py not found; skipped", file=sys.stderr)
        elif CONFIGS[name]["family"] == "llama":
            gguf = {p: convert(folder, script, p) for p in ("f32", "bf16")}
    commands = engines(folder, prompt, args, gguf)
    n_long = args.long
    times: dict[str, dict[int, list[float]]] = {e: {SHORT: [], n_long: []} for e in commands}
    texts: dict[str, str] = {}
    for _ in range(args.repeats):
        for engine, command in commands.items():
            for n in (SHORT, n_long):
                seconds, stdout = run(command(n), env)
                times[engine][n].append(seconds)
                texts[engine] = text_of(engine, stdout) if n == n_long else texts.get(engine, "")
    result = {}
    for engine, t in times.items():
        short, long = statistics.median(t[SHORT]), statistics.median(t[n_long])
        per_token = (long - short) / (n_long - SHORT)
        result[engine] = {"tokens_per_s": 1 / per_token, "startup_s": short - SHORT * per_token,
                          "run_long_s": long, "same_text_as_transformers": texts[engine] == texts["transformers"]}
    peer = result["transformers"]["tokens_per_s"]
    for r in result.values():
        r["ratio_to_transformers"] = r["tokens_per_s"] / peer
        for precision in ("f32", "bf16"):
            if (cpp := result.get(f"llama.cpp-{precision}")) is not None:
                r[f"ratio_to_llama.cpp-{precision}"] = r["tokens_per_s"] / cpp["tokens_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "gpt2-small"], choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long", type=int, default=288, help="new tokens of the long run (the short one makes 32)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP/MKL threads for every engine (default: each engine's own choice)")
    parser.add_argument("--lmstack-flags", nargs=argparse.REMAINDER, default=[],
                        help="extra flags for lmstack generate (last on the line), e.g. --dtype float32")
    parser.add_argument("--llama-cpp", action="store_true", help="also time llama-cpp-python on GGUF conversions")
    parser.add_argument("--convert", help="llama.cpp's convert_hf_to_gguf.py (default: found in llama_cpp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.threads:
        env |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    args.threads = args.threads or os.cpu_count()
    texts = (r["text"] for r in generate_documents(seed=0, scale=0.2))
    tokenizer = train_bpe(islice(texts, 4000), 2048)
    prompt = prompt_of(tokenizer)
    root = Path(tempfile.mkdtemp(prefix="lmstack-cli-bench-"))
    try:
        report = {"prompt": prompt, "new_tokens": args.long - SHORT, "threads": args.threads, "repeats": args.repeats,
                  "lmstack_flags": args.lmstack_flags}
        for name in args.configs:
            print(f"{name}: running", file=sys.stderr, flush=True)
            report[name] = bench(name, tokenizer, prompt, args, env, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'config':<12} {'engine':<16} {'tok/s':>9} {'start-up':>9} {'vs transformers':>16}  same text")
    for name in args.configs:
        for engine, r in report[name].items():
            print(f"{name:<12} {engine:<16} {r['tokens_per_s']:>9,.1f} {r['startup_s']:>8.2f}s "
                  f"{r['ratio_to_transformers']:>15.2f}x  {r['same_text_as_transformers']}")


if __name__ == "__main__":
    main()
