"""Throughput of the whole ``lmstack clean`` pipeline: documents/s, MB/s and peak memory, 1 and 2 processes.

Writes a corpus of at least ``--mb`` MB of text (``clean_corpus.py``: synthetic and real pages with every
kind of injection) to ``--work`` (never into the repo), then runs ``lmstack clean`` on it once per worker
count, each in a fresh process, sampling the resident memory of the whole process tree from /proc. CPU
seconds are reported beside wall time: on a shared machine the wall time also measures the neighbours.

    python bench/clean_throughput.py --mb 200 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import clean_corpus


def write_corpus(path: Path, mb: float, seed: int) -> dict:
    """Write (or reuse) the corpus; return its document count and MB of text and of file."""
    if not path.exists():
        n_bytes = 0
        with open(path, "w", encoding="utf-8") as f:
            for rec in clean_corpus.build(seed, 10**9):
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n_bytes += len(rec["text"].encode())
                if n_bytes >= mb * 2**20:
                    break
    docs, n_bytes = 0, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            docs, n_bytes = docs + 1, n_bytes + len(json.loads(line)["text"].encode())
    return {"docs": docs, "text_mb": round(n_bytes / 2**20, 1), "file_mb": round(path.stat().st_size / 2**20, 1)}


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def own_cpu(pid: int) -> float:
    """User + system seconds of ``pid`` itself so far (not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(corpus: Path, text_mb: float, out: Path, workers: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "lmstack", "clean", str(corpus), "--out", str(out), "--overwrite", "--json",
           "--workers", str(workers), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak, parent_cpu = 0, 0.0

    def sample():
        nonlocal peak, parent_cpu
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            parent_cpu = max(parent_cpu, own_cpu(proc.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    t0, cpu0 = time.perf_counter(), _children_cpu()
    sampler.start()
    stdout, _ = proc.communicate()
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"clean failed ({proc.returncode}): {' '.join(cmd)}")
    result = json.loads(stdout)
    return {"workers": workers, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "parent_cpu_s": round(parent_cpu, 1),
            "docs_per_s": round(result["documents_in"] / wall, 1),
            "text_mb_per_s": round(text_mb / wall, 3), "file_mb_per_s": round(corpus.stat().st_size / 2**20 / wall, 3),
            "peak_rss_mb": round(peak / 2**20), "documents_in": result["documents_in"],
            "documents_out": result["documents_out"], "removed": result["removed"], "pii": result["pii"]}


def _children_cpu() -> float:
    """User + system seconds of every finished descendant (pool workers included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/clean_bench"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*",
                    help="config overrides for clean, after --, e.g. -- --gopher.cjk_words chars")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.work / f"corpus_{args.mb:g}mb.jsonl"
    info = write_corpus(corpus, args.mb, args.seed)
    runs = [run(corpus, info["text_mb"], args.work / f"out_w{w}", w, args.overrides) for w in args.workers]
    report = {"corpus": str(corpus), **info, "cpus": os.cpu_count(), "overrides": args.overrides, "runs": runs}
    if len(runs) > 1:
        report["speedup"] = round(runs[0]["wall_s"] / runs[-1]["wall_s"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
