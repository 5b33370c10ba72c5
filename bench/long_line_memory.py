"""Is peak memory flat in line length? Peak RSS of ``lmstack prepare`` and ``lmstack clean`` on one huge line.

Four inputs of the same text (the built-in bilingual corpus, repeated to ``--size-mb``), written in a temp folder:
  line.txt        one line, no newline anywhere (documents joined by spaces)
  record.jsonl    one JSON record whose ``text`` is that line
  paragraphs.txt  the same documents, one paragraph each (blank-line separated): the comparison
  records.jsonl   the same documents, one record each
Each command runs in its own child process; its peak RSS is what ``os.wait4`` reports for it (the most any one
process of its tree held: Linux folds reaped grandchildren into it) and, polled every 50 ms with psutil, the
largest sum over the process and its children (``clean`` runs worker processes). Target: < 500 MB.

    python bench/long_line_memory.py --json
    python bench/long_line_memory.py --size-mb 5 --commands prepare
    python bench/long_line_memory.py --repo /tmp/base   # the same bench against another checkout (before/after)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from lmstack.cli import emit


def corpus_documents(size_mb: float) -> list[str]:
    """Documents of the built-in corpus (seeds 0-3), repeated until they hold ``size_mb`` MB of UTF-8."""
    from lmstack.data.synth import generate_documents

    base = [" ".join(r["text"].split()) for seed in range(4) for r in generate_documents(seed=seed)]
    docs, size, target = [], 0, size_mb * 2**20
    for doc in itertools.cycle(base):
        if size >= target:
            return docs
        docs.append(doc)
        size += len(doc.encode("utf-8")) + 1


def write_inputs(folder: Path, size_mb: float) -> dict[str, Path]:
    docs = corpus_documents(size_mb)
    paths = {name: folder / name for name in ("line.txt", "record.jsonl", "paragraphs.txt", "records.jsonl")}
    line = " ".join(docs)
    paths["line.txt"].write_text(line, encoding="utf-8")
    paths["record.jsonl"].write_text(json.dumps({"text": line}, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["paragraphs.txt"].write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    with open(paths["records.jsonl"], "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)
    return paths


def run(command: list[str], cwd: Path) -> dict:
    """Run ``command``; its wall time, exit status, wait4 peak RSS and polled tree peak RSS (MB)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tree_peak, done = [0], threading.Event()

    def poll() -> None:
        try:
            root = psutil.Process(proc.pid)
            while not done.is_set():
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
                tree_peak[0] = max(tree_peak[0], total)
                time.sleep(0.05)
        except psutil.NoSuchProcess:
            return

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    # read the pipes in threads so a chatty child never blocks on a full pipe
    outs: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, s=s: outs.__setitem__(k, s.read()), daemon=True)
               for k, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for t in (poller, *readers):
        t.join()
    result = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - start, 1),
              "peak_rss_mb": round(usage.ru_maxrss / 1024), "tree_peak_rss_mb": round(tree_peak[0] / 2**20)}
    if proc.returncode != 0:
        result["error"] = outs["stderr"].decode("utf-8", "replace").strip().splitlines()[-1:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=50, help="size of each input")
    parser.add_argument("--commands", default="prepare,clean", help="comma-separated: prepare, clean")
    parser.add_argument("--inputs", default="line.txt,record.jsonl,paragraphs.txt,records.jsonl",
                        help="comma-separated names of the inputs to run")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="checkout whose lmstack runs (default: this one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report: dict = {"size_mb": args.size_mb, "repo": str(args.repo), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="lmstack-bench-") as tmp:
        paths = write_inputs(Path(tmp), args.size_mb)
        for name in args.inputs.split(","):
            for command in args.commands.split(","):
                out = Path(tmp) / f"out-{command}-{name}"
                argv = [sys.executable, "-m", "lmstack", command, str(paths[name]), "--out", str(out), "--json"]
                if command == "clean":
                    argv += ["--workers", "1"]
                print(f"{command} {name} ...", file=sys.stderr, flush=True)
                report["runs"][f"{command} {name}"] = result = run(argv, args.repo)
                print(f"  {result}", file=sys.stderr, flush=True)
    emit(report, args.json)


if __name__ == "__main__":
    main()
