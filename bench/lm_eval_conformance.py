"""lm-evaluation-harness against ``lmstack serve``: the real ``lm_eval`` (installed in its own environment, never in
lmstack's) scores a local multiple-choice task and a generate-until task through ``--model local-completions`` (batch
sizes 1 and 8, the tokenizer loaded by lm-eval or asked of the server's ``/tokenize``), and through its own ``hf``
backend on the same model directory; then ``lmstack evaluate`` runs the same YAMLs on the model directory and
through the server. Accuracies must be equal, per-sample log-likelihoods within 1e-4 of lm-eval's ``hf``,
generations identical, batch size 1 and 8 alike.

The tasks are lm-eval task YAMLs over local JSON-lines files of the synthetic world (``choice_questions`` test split:
four choices per question, ``acc`` and ``acc_norm``; ``word_problems`` test split: greedy answers, GSM8K's
flexible last-number filter, ``exact_match``). The model is ``runs/demo/train/model`` when ``make demo`` has made it,
else a random tiny Llama built here (``--model DIR`` for another). Install lm-eval first (pin torch, so no CUDA
build is pulled)::

    python3 -m venv /tmp/lmeval && /tmp/lmeval/bin/pip install torch==2.13.0 && \\
        /tmp/lmeval/bin/pip install "lm_eval[hf,api]==0.4.13"
    python bench/lm_eval_conformance.py --json
    python bench/lm_eval_conformance.py --lm-eval /opt/lmeval --limit 40

Without the lm-eval environment the benchmark says so and exits 0 (skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import torch
import yaml

from lmstack.data.synth import DATASETS, build_world, generate_documents
from lmstack.eval.evaluate_command import evaluate
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "runs" / "demo" / "train" / "model"
SERVER = "from lmstack.cli import main; main()"
NAME = "served"
MC, GEN = "lmstack_choice", "lmstack_word_problems"


def tiny_model(folder: Path) -> Path:
    texts = [d["text"] for d in generate_documents(seed=0, scale=0.05)]
    tokenizer = train_bpe(texts, vocab_size=2048)
    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=256)).eval()
    return save_model(model, folder / "tiny", tokenizer=tokenizer)


def write_tasks(folder: Path, limit: int, max_gen_toks: int) -> None:
    """Two lm-eval task YAMLs (lm-eval's keys, local JSON data files) and their data, in ``folder``."""
    world = build_world(0)
    data = {}
    for name in ("choice_questions", "word_problems"):
        splits = DATASETS[name](world, random.Random(f"0:dataset:{name}"), 0.05)
        data[name] = splits["test"][:limit]
        with open(folder / f"{name}_test.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in data[name])
    common = {"dataset_path": "json", "test_split": "test", "num_fewshot": 0}
    mc = {**common, "task": MC, "dataset_kwargs": {"data_files": {"test": str(folder / "choice_questions_test.jsonl")}},
          "output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_target": "label",
          "doc_to_choice": "choices",
          "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                          {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]}
    gen = {**common, "task": GEN, "dataset_kwargs": {"data_files": {"test": str(folder / "word_problems_test.jsonl")}},
           "output_type": "generate_until", "doc_to_text": "Question: {{question}}\nAnswer:",
           "doc_to_target": "{{target}}",
           "generation_kwargs": {"until": ["\n\n", "Question:"], "max_gen_toks": max_gen_toks, "do_sample": False,
                                 "temperature": 0.0},
           "filter_list": [{"name": "flexible-extract", "filter": [
               {"function": "regex", "regex_pattern": r"(-?[$0-9.,]{2,})|(-?[0-9]+)", "group_select": -1},
               {"function": "take_first"}]}],
           "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                            "ignore_case": True, "ignore_punctuation": False,
                            "regexes_to_ignore": [",", r"\$", "(?s).*#### ", r"\.$"]}]}
    for task in (mc, gen):
        (folder / f"{task['task']}.yaml").write_text(yaml.safe_dump(task, allow_unicode=True, sort_keys=False))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "LMSTACK_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "serve", "--model", str(model_dir), "--port", str(port),
                             "--name", NAME, "--slots", "16", "--log-level", "warning", "--device", "cpu"], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"lmstack serve exited with {proc.returncode}")
        try:
            if httpx2.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx2.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("lmstack serve did not start")


def run_lm_eval(lm_eval: Path, model: str, model_args: str, batch_size: int, tasks: Path, out: Path,
                threads: int) -> tuple[dict, dict[str, list[dict]], float]:
    """One lm_eval run: (results per task, samples per task, seconds)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "OPENAI_API_KEY": ""}
    command = [str(lm_eval), "--model", model, "--model_args", model_args, "--tasks", f"{MC},{GEN}",
               "--include_path", str(tasks), "--batch_size", str(batch_size), "--device", "cpu", "--log_samples",
               "--output_path", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"lm_eval failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-4000:]}")
    results = json.loads(max(out.rglob("results_*.json"), key=os.path.getmtime).read_text())["results"]
    samples = {}
    for task in (MC, GEN):
        path = max(out.rglob(f"samples_{task}_*.jsonl"), key=os.path.getmtime)
        samples[task] = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])
    return results, samples, seconds


def run_lmstack(tasks: Path, out: Path, **where: str) -> tuple[dict, dict[str, list[dict]], float]:
    """``lmstack evaluate`` on the same task YAMLs, its report read into lm-eval's shapes (results, samples)."""
    start = time.perf_counter()
    evaluate([str(tasks / f"{MC}.yaml"), str(tasks / f"{GEN}.yaml")], batch_size=8, out=out, **where)
    seconds = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text())
    results, samples = {}, {}
    for r in report["results"]:
        results[r["task"]] = {k: m["value"] for k, m in r["metrics"].items()}
        if r["output_type"] == "multiple_choice":
            samples[r["task"]] = [{"resps": [[[ll, g]] for ll, g in zip(s["loglikelihoods"], s["is_greedy"])]}
                                  for s in r["samples"]]
        else:
            samples[r["task"]] = [{"resps": [s["outputs"]]} for s in r["samples"]]
    return results, samples, seconds


def compare(reference: dict[str, list[dict]], other: dict[str, list[dict]]) -> dict:
    """Largest per-choice log-likelihood gap (multiple choice), greedy flags and generations that differ (lm-eval's
    samples file writes each choice's response as strings: ["-12.5", "False"])."""
    gap, greedy_diff = 0.0, 0
    for a, b in zip(reference[MC], other[MC], strict=True):
        for (ll_a, g_a), (ll_b, g_b) in zip([r[0] for r in a["resps"]], [r[0] for r in b["resps"]], strict=True):
            gap = max(gap, abs(float(ll_a) - float(ll_b)))
            greedy_diff += _flag(g_a) != _flag(g_b)
    texts = sum(a["resps"] != b["resps"] for a, b in zip(reference[GEN], other[GEN], strict=True))
    return {"max_abs_loglik_diff": gap, "is_greedy_diffs": greedy_diff, "generations_differing": texts}


def _flag(value: bool | str) -> bool:
    """An is_greedy flag: lm-eval's samples file writes it as the string "True" or "False"."""
    return value is True or value == "True"


def scores(results: dict) -> dict:
    return {"acc": results[MC]["acc,none"], "acc_norm": results[MC]["acc_norm,none"],
            "exact_match": results[GEN]["exact_match,flexible-extract"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm-eval", type=Path, default=Path("/tmp/lmeval"), help="the lm-eval virtual environment")
    parser.add_argument("--model", type=Path, help="model directory (default: the demo's, else a tiny random one)")
    parser.add_argument("--limit", type=int, default=60, help="items per task")
    parser.add_argument("--max-gen-toks", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server and of lm_eval")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # lmstack evaluate runs in this process
    lm_eval = args.lm_eval / "bin" / "lm_eval"
    if not lm_eval.is_file():
        report = {"skipped": f"{lm_eval} not found: install lm-eval in its own environment (see this file's "
                             "docstring) or pass --lm-eval"}
        print(json.dumps(report) if args.json else report["skipped"])
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or (DEMO_MODEL if (DEMO_MODEL / "config.json").is_file() else tiny_model(tmp))
        context = json.loads((model_dir / "config.json").read_text())["lmstack"]["block_size"]
        tasks = tmp / "tasks"
        tasks.mkdir()
        write_tasks(tasks, args.limit, args.max_gen_toks)
        proc, url = start_server(model_dir, args.threads)
        runs: dict[str, tuple[dict, dict, float]] = {}
        try:
            api = (f"model={NAME},base_url={url}/v1/completions,max_length={context},tokenized_requests=True,"
                   "max_retries=1")
            for label, backend, batch in (("server_bs1", f"tokenizer_backend=huggingface,tokenizer={model_dir}", 1),
                                          ("server_bs8", f"tokenizer_backend=huggingface,tokenizer={model_dir}", 8),
                                          ("server_remote_tokenizer_bs8", "tokenizer_backend=remote", 8)):
                runs[label] = run_lm_eval(lm_eval, "local-completions", f"{api},{backend}", batch, tasks,
                                          tmp / label, args.threads)
            runs["lmstack_evaluate_server"] = run_lmstack(tasks, tmp / "lmstack_server", model=NAME, base_url=url)
            metrics = httpx2.get(url + "/metrics", timeout=10).text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        runs["hf_bs8"] = run_lm_eval(lm_eval, "hf", f"pretrained={model_dir},dtype=float32", 8, tasks, tmp / "hf",
                                     args.threads)
        runs["lmstack_evaluate_local"] = run_lmstack(tasks, tmp / "lmstack_local", model=str(model_dir))
    reference = runs["hf_bs8"][1]
    report = {"model": str(model_dir), "items": {MC: len(reference[MC]), GEN: len(reference[GEN])},
              "runs": {label: {**scores(results), "seconds": round(seconds, 1),
                               **({} if label == "hf_bs8" else {"vs_hf": compare(reference, samples)})}
                       for label, (results, samples, seconds) in runs.items()},
              "bs1_vs_bs8": compare(runs["server_bs1"][1], runs["server_bs8"][1]),
              "first_generation": {"hf": reference[GEN][0]["resps"][0][0],
                                   "server": runs["server_bs8"][1][GEN][0]["resps"][0][0]},
              "server_requests": sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                                     if line.startswith("lmstack_http_requests_total{")
                                     and 'route="/v1/completions"' in line)}
    accs = {json.dumps(scores(r[0]), sort_keys=True) for r in runs.values()}
    report["accuracies_equal"] = len(accs) == 1
    report["greedy_choices"] = sum(_flag(r[0][1]) for s in reference[MC] for r in s["resps"])
    report["likelihoods_within_1e-4"] = all(r["vs_hf"]["max_abs_loglik_diff"] <= 1e-4
                                            for r in report["runs"].values() if "vs_hf" in r)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for label, row in report["runs"].items():
        print(f"{label:30s} acc {row['acc']:.4f}  acc_norm {row['acc_norm']:.4f}  exact_match {row['exact_match']:.4f}"
              f"  {row['seconds']:6.1f} s  {row.get('vs_hf', '')}")
    print(f"accuracies equal: {report['accuracies_equal']}; likelihoods within 1e-4 of hf: "
          f"{report['likelihoods_within_1e-4']}; bs1 vs bs8: {report['bs1_vs_bs8']}")


if __name__ == "__main__":
    main()
