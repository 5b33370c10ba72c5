"""Serving throughput and latency: concurrent streaming clients against a real ``lmstack serve`` process.

For each model preset (random weights, a byte-level BPE tokenizer trained on the built-in corpus) a server
is started with ``--slots 64``; then 1, 4, 16 and 64 clients each stream one chat completion of 128 new
tokens (greedy, at the same time). Reported per concurrency: aggregate tokens/s (all clients' tokens over
the wall time), p50/p99 time to first token, p50 inter-token latency; and ``speedup_16`` (aggregate at 16
clients over 1). The reference is the same exported model served by ``transformers`` one request at a time
(``generate`` with 128 new tokens, back to back): its tokens/s is what a non-batching server delivers at any
concurrency.

    python bench/serve_throughput.py --json
    python bench/serve_throughput.py --presets tiny --clients 1 16 --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import torch

from lmstack.data.synth import generate_documents
from lmstack.text.tokenizer import train_bpe
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model

NEW_TOKENS = 128
PRESETS = {"tiny": dict(block_size=512), "llama-small": {}}  # "tiny" is 64 positions by default: too short
SERVER = "from lmstack.cli import main; main()"
PROMPT = [{"role": "user", "content": "Tell me about the river town of Kell. 给我讲讲凯尔河镇。"}]


def make_model(name: str, folder: Path) -> Path:
    texts = [d["text"] for d in generate_documents(seed=0, scale=0.05)]
    tokenizer = train_bpe(texts, vocab_size=2048)
    torch.manual_seed(0)
    model = build_model(preset(name, vocab_size=tokenizer.vocab_size, **PRESETS[name])).eval()
    return save_model(model, folder / name, tokenizer=tokenizer)


def start(model_dir: Path, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "serve", "--model", str(model_dir), "--port", str(port),
                             "--name", "m", "--slots", "64", "--max-queue", "256", "--log-level", "warning"], env=env)
    for _ in range(600):
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx2.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


async def one_client(client: httpx2.AsyncClient, url: str) -> dict:
    body = {"model": "m", "messages": PROMPT, "max_tokens": NEW_TOKENS, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    start, stamps, tokens = time.perf_counter(), [], 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"ttft": stamps[0] - start, "gaps": gaps, "tokens": tokens}


async def wave(url: str, clients: int) -> dict:
    async with httpx2.AsyncClient(timeout=600, limits=httpx2.Limits(max_connections=clients)) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_client(client, url) for _ in range(clients)))
        wall = time.perf_counter() - start
    ttft = sorted(r["ttft"] for r in results)
    gaps = [g for r in results for g in r["gaps"]]
    tokens = sum(r["tokens"] for r in results)
    return {"clients": clients, "tokens": tokens, "seconds": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
            "ttft_p50_ms": round(1000 * _pct(ttft, 50), 1), "ttft_p99_ms": round(1000 * _pct(ttft, 99), 1),
            "itl_p50_ms": round(1000 * statistics.median(gaps), 2) if gaps else None}


def transformers_reference(model_dir: Path, requests: int, threads: int) -> dict:
    """The same model through ``transformers.generate``, one request after another."""
    from transformers import AutoModelForCausalLM

    from lmstack.text.tokenizer import Tokenizer

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = Tokenizer.load(model_dir)
    ids = torch.tensor([tokenizer.encode(tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True))])
    model.generate(ids, max_new_tokens=4, do_sample=False)  # warm up
    start = time.perf_counter()
    for _ in range(requests):
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                       min_new_tokens=NEW_TOKENS, do_sample=False)
    wall = time.perf_counter() - start
    return {"requests": requests, "tokens_per_s": round(requests * NEW_TOKENS / wall, 1)}


def _pct(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server and of the reference")
    parser.add_argument("--port", type=int, default=8391)
    parser.add_argument("--reference-requests", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {"new_tokens": NEW_TOKENS, "threads": args.threads, "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            model_dir = make_model(name, Path(tmp))
            proc = start(model_dir, args.port, args.threads)
            try:
                url = f"http://127.0.0.1:{args.port}"
                asyncio.run(wave(url, 2))  # warm up
                waves = [asyncio.run(wave(url, n)) for n in args.clients]
            finally:
                proc.terminate()
                proc.wait()
            result = {"waves": waves, "transformers_one_at_a_time": transformers_reference(
                model_dir, args.reference_requests, args.threads)}
            by = {w["clients"]: w["tokens_per_s"] for w in waves}
            if 1 in by and 16 in by:
                result["speedup_16"] = round(by[16] / by[1], 2)
            out["presets"][name] = result
            if not args.json:
                print(name, json.dumps(result), file=sys.stderr)
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
