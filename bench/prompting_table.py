"""Prompting on the synthetic world: direct answers vs chain of thought vs self-consistency, by 1, 2 and 3 steps.

The setting of Wei et al. (2022) and Wang et al. (2023), at the demo's size, on 2 CPU cores:

1. ``lmstack synth`` writes the world and its word problems (``word_problems_{train,test}.jsonl``); a larger
   training draw (``--train-scale``; keyed-hash split, so no test question is ever drawn) is rendered by the
   harness's own tasks (``world_arith_direct`` / ``world_arith_cot``) into prompt-completion records: each
   problem once, as a direct answer or as its worked solution, behind 0 or 1 shot of the same form, so the shots'
   form is what tells the model which to write.
2. ``lmstack prepare --split-digits`` (one token per digit, as LLaMA and Qwen) and ``lmstack train`` with the demo
   config (the demo's shape: 4 x 128, about 1 M parameters), then ``lmstack finetune --method full`` on the records.
3. ``lmstack evaluate world_arith_direct world_arith_cot --shots 0,1,2`` and ``world_arith_sc`` (K = 8 samples
   sharing one prefill, majority vote) on the 300 held-out problems; accuracy per step count from the report's
   per-sample records; self-consistency's wall time against greedy chain of thought on the same prompts.
4. Translation the same way: a larger draw of the world's parallel sentences (``--translation-scale``), each pair
   one direction behind 0 or 1 shot, fine-tuned from the same base; ``world_translate_{en_zh,zh_en}`` BLEU / chrF
   (sacrebleu, signatures printed) at 0 and 2 shots.

Every step is a CLI command, printed before it runs; a finished step is skipped on a rerun.

    python bench/prompting_table.py --out runs/prompting            # about 30 min on 2 quiet cores
    python bench/prompting_table.py --out runs/prompting --json
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from lmstack.data.synth.translation import translation
from lmstack.data.synth.word_problems import word_problems
from lmstack.data.synth.world import build_world
from lmstack.eval.tasks import Task
from lmstack.io import atomic_open

METHODS = {"direct": "world_arith_direct", "cot": "world_arith_cot"}
DIRECTIONS = {"en-zh": "world_translate_en_zh", "zh-en": "world_translate_zh_en"}


def lmstack(*args: str | Path) -> None:
    cmd = [sys.executable, "-m", "lmstack", *map(str, args)]
    print("$", shlex.join(["lmstack", *map(str, args)]), flush=True)
    subprocess.run(cmd, check=True)


def sft_records(corpus: Path, names: dict[str, str], train: list[dict], max_shots: int, seed: int) -> list[dict]:
    """A training draw rendered by evaluation tasks (one picked per record): prompt = 0..``max_shots`` shots of
    that task + the record's text, completion = its target, as the harness will prompt and score it."""
    tasks = {m: Task.load(name, corpus) for m, name in names.items()}
    pool = {m: t.fewshot_docs()[0] for m, t in tasks.items()}
    rng = random.Random(seed)
    out = []
    for fields in train:
        method = rng.choice(list(names))
        task = tasks[method]
        doc = type(pool[method][0])(0, fields, "train draw")
        shots = rng.sample(pool[method], rng.randint(0, max_shots))
        completion = task.spec.target_delimiter + task.target_text(doc)
        out.append({"prompt": task.context(doc, shots), "completion": completion, "kind": method})
    return out


def write_records(path: Path, rows: list[dict]) -> None:
    with atomic_open(path) as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(f"{len(rows)} prompt-completion records -> {path}", flush=True)


def by_steps(report: dict, corpus: Path) -> dict:
    """Accuracy per (task, shots, metric, steps) from the per-sample records (``where`` is file:line)."""
    steps = {}
    for i, line in enumerate((corpus / "word_problems_test.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        steps[i] = json.loads(line)["steps"]
    table: dict = defaultdict(list)
    for r in report["results"]:
        for s in r["samples"]:
            n = steps[int(s["where"].rsplit(":", 1)[1])]
            for metric, score in s["scores"].items():
                table[(r["task"], r["num_fewshot"], metric, n)].append(score)
                table[(r["task"], r["num_fewshot"], metric, "all")].append(score)
    return {k: (sum(v) / len(v), len(v)) for k, v in table.items()}


def translation_table(out: Path) -> list[dict]:
    report = json.loads((out / "eval_translate" / "report.json").read_text(encoding="utf-8"))
    return [{"task": r["task"], "shots": r["num_fewshot"], **{m: round(v["value"], 2) for m, v in r["metrics"].items()},
             "signature": next((v["signature"] for v in r["metrics"].values() if "signature" in v), "")}
            for r in report["results"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/prompting"))
    ap.add_argument("--train-scale", type=float, default=20.0, help="word problems drawn for SFT (x 1,500)")
    ap.add_argument("--max-shots", type=int, default=1)
    ap.add_argument("--pretrain-iters", type=int, default=1200)
    ap.add_argument("--sft-iters", type=int, default=1500)
    ap.add_argument("--sft-batch", type=int, default=16)
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--translation-scale", type=float, default=10.0, help="parallel pairs drawn for SFT (x 1,000)")
    ap.add_argument("--translate-iters", type=int, default=600)
    ap.add_argument("--shots", default="0,1,2")
    ap.add_argument("--limit", type=int, default=None, help="evaluate the first N test problems only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out, start = args.out, time.perf_counter()
    corpus, data, base, sft = out / "corpus", out / "data", out / "train", out / "sft"
    if not (corpus / "word_problems_test.jsonl").is_file():
        lmstack("synth", "--out", corpus)
    world = build_world(0)
    records = out / "word_problems_pc.jsonl"
    if not records.is_file():
        draw = word_problems(world, random.Random("prompting:0"), args.train_scale)["train"]
        write_records(records, sft_records(corpus, METHODS, draw, args.max_shots, seed=0))
    pairs = out / "translation_pc.jsonl"
    if not pairs.is_file():
        draw = translation(world, random.Random("prompting:0"), args.translation_scale)["train"]
        write_records(pairs, sft_records(corpus, DIRECTIONS, draw, args.max_shots, seed=0))
    if not (data / "manifest.json").is_file():
        lmstack("prepare", corpus / "pretrain.jsonl", "--out", data, "--vocab-size", "2048", "--chat-markup",
                "--split-digits")
    if not (base / "model" / "model.safetensors").is_file():
        lmstack("train", "--config", "lmstack/configs/demo.yaml", "--data", data, "--out", base,
                "--max-iters", str(args.pretrain_iters), "--overwrite")
    for data_file, run, iters in ((records, sft, args.sft_iters), (pairs, out / "sft_translate", args.translate_iters)):
        if not (run / "model" / "model.safetensors").is_file():
            lmstack("finetune", "--method", "full", "--model", base / "model", "--data", data_file, "--out", run,
                    "--format", "completion", "--max-iters", str(iters), "--batch-size", str(args.sft_batch),
                    "--lr", str(args.sft_lr), "--min-lr", str(args.sft_lr / 10), "--warmup-iters", "50",
                    "--eval-interval", "250", "--checkpoint-interval", "500", "--overwrite")
    limit = ["--limit", str(args.limit)] if args.limit else []
    model = ["--model", sft / "model", "--data-dir", corpus]
    if not (out / "eval" / "report.json").is_file():
        lmstack("evaluate", *METHODS.values(), *model, "--shots", args.shots, "--out", out / "eval", *limit)
    if not (out / "eval_sc" / "report.json").is_file():
        lmstack("evaluate", "world_arith_sc", *model, "--shots", "1", "--out", out / "eval_sc", *limit)
    if not (out / "eval_translate" / "report.json").is_file():
        lmstack("evaluate", *DIRECTIONS.values(), "--model", out / "sft_translate" / "model", "--data-dir", corpus,
                "--shots", "0,2", "--out", out / "eval_translate")
    reports = [json.loads((out / d / "report.json").read_text(encoding="utf-8")) for d in ("eval", "eval_sc")]
    table = by_steps({"results": [r for rep in reports for r in rep["results"]]}, corpus)
    seconds = {(r["task"], r["num_fewshot"]): r["seconds"] for rep in reports for r in rep["results"]}
    rows = []
    for (task, k, metric, n), (acc, count) in sorted(table.items(), key=lambda kv: str(kv[0])):
        rows.append({"task": task, "shots": k, "metric": metric, "steps": n, "accuracy": round(acc, 4), "n": count})
    sc_ratio = seconds[("world_arith_sc", 1)] / seconds[("world_arith_cot", 1)]
    result = {"rows": rows, "seconds": {f"{t}@{k}": s for (t, k), s in seconds.items()},
              "sc_over_greedy_cot": round(sc_ratio, 2), "translation": translation_table(out),
              "total_seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    print("\n| method | shots | metric | 1 step | 2 steps | 3 steps | all |\n|---|---:|---|---:|---:|---:|---:|")
    keys = sorted({(t, k, m) for t, k, m, _ in table}, key=str)
    for t, k, m in keys:
        cells = [f"{table[(t, k, m, n)][0]:.3f}" if (t, k, m, n) in table else "" for n in (1, 2, 3, "all")]
        print(f"| {t} | {k} | {m.split(',', 1)[1]} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(json.dumps(row, ensure_ascii=False) for row in result["translation"]))
    print(f"\nself-consistency K=8 wall time / greedy CoT (1 shot): {sc_ratio:.2f}x; "
          f"seconds: {result['seconds']}")


if __name__ == "__main__":
    main()
