"""Server memory under sustained load: RSS of a ``lmstack serve`` process over 1,000 sequential requests.

A random tiny model is served; requests alternate chat completions (streamed and not) and embeddings. The
server's resident set size is sampled every 100 requests; ``growth_mb`` is the last sample minus the one
after the first 100 (caches warm), and should stay near zero.

    python bench/serve_memory.py --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import httpx2

from serve_throughput import make_model, start


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--port", type=int, default=8392)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start(make_model("tiny", Path(tmp)), args.port, threads=1)
        url, samples = f"http://127.0.0.1:{args.port}", []
        try:
            with httpx2.Client(base_url=url, timeout=60) as client:
                for i in range(args.requests):
                    messages = [{"role": "user", "content": f"request {i}: 你好"}]
                    if i % 3 == 2:
                        r = client.post("/v1/embeddings", json={"model": "m", "input": [f"text {i}", "凯尔"]})
                    else:
                        r = client.post("/v1/chat/completions", json={"model": "m", "messages": messages,
                                                                       "max_tokens": 32, "stream": i % 3 == 1})
                    r.raise_for_status()
                    if (i + 1) % 100 == 0:
                        samples.append(round(rss_mb(proc.pid), 1))
        finally:
            proc.terminate()
            proc.wait()
    result = {"requests": args.requests, "rss_mb": samples, "growth_mb": round(samples[-1] - samples[0], 1)}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
