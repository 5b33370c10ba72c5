"""Multiple-choice speed: a 1,000-item ``world_mc`` task (0-shot) on the demo model, items per second, local vs server.

The same task YAML and data run through ``lmstack evaluate --model DIR`` (in-process) and ``lmstack evaluate
--base-url URL`` against ``lmstack serve`` on the same model (legacy completions with ``echo`` and ``logprobs``,
as lm-eval's ``local-completions`` asks; the server in its own process with the same torch threads). Runs
alternate, median of ``--repeats``; accuracies must be equal.

    python bench/mc_speed.py --json
    python bench/mc_speed.py --items 1000 --repeats 3 --batch-size 8 --threads 2
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lm_eval_conformance import DEMO_MODEL, NAME, start_server

from lmstack.data.synth.choice_questions import choice_questions
from lmstack.data.synth.world import build_world
from lmstack.eval.evaluate_command import evaluate


def write_items(folder: Path, items: int) -> None:
    """``items`` questions: the demo world's held-out ones first, then its training ones and those of other worlds
    (the world holds about 600: this measures speed, the accuracy is reported but is not the point)."""
    rows, seed = [], 0
    while len(rows) < items:
        splits = choice_questions(build_world(seed), random.Random(f"{seed}:dataset:choice_questions"), 1.0)
        rows += splits["test"] + splits["train"]
        seed += 1
    with open(folder / "choice_questions_test.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:items])


def run(data: Path, out: Path, batch_size: int, **where: str) -> tuple[float, dict]:
    start = time.perf_counter()
    evaluate(["world_mc"], data_dir=data, out=out, batch_size=batch_size, overwrite=True, **where)
    seconds = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return seconds, {k: m["value"] for k, m in report["results"][0]["metrics"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEMO_MODEL)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_items(tmp, args.items)
        proc, url = start_server(args.model, args.threads)
        try:
            times: dict[str, list[float]] = {"local": [], "server": []}
            metrics = {}
            for _ in range(args.repeats):
                for label, where in (("local", {"model": str(args.model)}), ("server", {"model": NAME,
                                                                                      "base_url": url})):
                    seconds, metrics[label] = run(tmp, tmp / label, args.batch_size, **where)
                    times[label].append(seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {"items": args.items, "batch_size": args.batch_size, "threads": args.threads,
              **{f"{k}_items_per_s": round(args.items / statistics.median(v), 1) for k, v in times.items()},
              "server_over_local_time": round(statistics.median(times["server"]) / statistics.median(times["local"]),
                                              2),
              "metrics": metrics, "same_accuracy": metrics["local"] == metrics["server"]}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
