"""``lmstack evaluate``: run lm-evaluation-harness-style tasks on a local model directory or any OpenAI-compatible
server, with a shot sweep and self-consistency samples, and write ``report.json`` / ``report.md`` / plots.

Everything a user can get wrong (a task file, a template, a data file, too many shots, a filter, a metric, the
output folder) is checked before the model is opened; results are written after each task x shots run, so an
interrupted or failed run keeps what finished.
"""

from __future__ import annotations

import time
from pathlib import Path

from lmstack.config import check_seed
from lmstack.errors import LmstackError
from lmstack.eval.harness import Plan, check, plan, run
from lmstack.eval.lm import open_lm
from lmstack.eval.report import write_report
from lmstack.eval.tasks import Task
from lmstack.io import refuse_existing


def parse_shots(shots: str | None) -> list[int | None]:
    """``"0,1,2,4,8"`` -> [0, 1, 2, 4, 8]; ``None``: each task's own ``num_fewshot``."""
    if shots is None:
        return [None]
    try:
        ks = [int(k) for k in str(shots).split(",") if k.strip()]
    except ValueError:
        raise LmstackError(f"--shots: expected comma-separated counts such as 0,1,2,4,8, got {shots!r}") from None
    if not ks or any(k < 0 for k in ks):
        raise LmstackError(f"--shots: expected counts >= 0 such as 0,1,2,4,8, got {shots!r}")
    return list(dict.fromkeys(ks))


def evaluate(tasks: list[str], model: str | None = None, adapter: str | None = None, base_url: str | None = None,
             api_key: str | None = None, chat: bool = False, shots: str | None = None, samples: int | None = None,
             limit: int | None = None, data_dir: Path = Path("runs/demo/corpus"), batch_size: int = 8,
             seed: int = 0, out: Path | None = None, overwrite: bool = False) -> dict:
    """Evaluate a model on tasks (lm-evaluation-harness YAMLs): multiple choice, generate-until, perplexity.

    Args:
        tasks: built-in task names (lmstack/eval/tasks/<name>.yaml) or task YAML files
        model: model directory (or, with --base-url, the served model's name)
        adapter: adapter directory from `lmstack finetune` (local models only)
        base_url: an OpenAI-compatible server to evaluate instead of a local model (e.g. http://127.0.0.1:8000)
        api_key: the server's API key
        chat: render prompts with the model's chat template, choices scored as the reply (lm-eval's
            --apply_chat_template); generate-until tasks use chat completions on a server
        shots: few-shot counts to sweep, comma-separated (e.g. 0,1,2,4,8); default: each task's num_fewshot
        samples: outputs sampled per prompt for self-consistency (overrides each task's repeats)
        limit: evaluate only the first N documents of each task
        data_dir: where relative data files not beside the task YAML are found
        batch_size: requests per model batch
        seed: seed of sampled generations and of the bootstrap intervals
        out: output folder for report.json, report.md and plots (default: runs/eval)
        overwrite: replace an existing report in the output folder
    """
    check_seed(seed, "--seed")
    if samples is not None and samples < 1:
        raise LmstackError(f"--samples must be >= 1, got {samples}")
    if limit is not None and limit < 1:
        raise LmstackError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise LmstackError(f"--batch-size must be >= 1, got {batch_size}")
    if not tasks:
        raise LmstackError("name at least one task")
    ks = parse_shots(shots)
    plans: list[Plan] = []
    for name in tasks:
        task = Task.load(name, Path(data_dir))
        if chat and task.spec.output_type != "loglikelihood_rolling":
            task.spec.chat_template = True
        p = plan(task)
        for k in ks:
            if task.spec.output_type == "loglikelihood_rolling" and k:
                raise task.error(f"--shots {k}: loglikelihood_rolling scores whole documents (shots must be 0)")
            task.check_fewshot(task.spec.num_fewshot if k is None else k)
        check(p, ks, limit)  # every template and field renders on the docs that will run
        plans.append(p)
    out = Path(out) if out is not None else Path("runs/eval")
    refuse_existing(out / "report.json", overwrite)
    lm = open_lm(model, adapter, base_url, batch_size=batch_size,
                 **({"api_key": api_key, "chat": chat} if base_url is not None else {}))
    config = {"tasks": list(tasks), "model": model, "adapter": adapter, "base_url": base_url, "chat": chat,
              "shots": [k for k in ks if k is not None] or None, "samples": samples, "limit": limit,
              "data_dir": str(data_dir), "batch_size": batch_size, "seed": seed, "lm": lm.name}
    report: dict = {"config": config, "results": []}
    start = time.perf_counter()
    for p in plans:
        for k in ks:
            result = run(p, lm, k, samples, limit, seed)
            result["config"] = p.task.config()
            report["results"].append(result)
            written = write_report(out, report)  # partial results survive a later failure
    summary = {f"{r['task']}@{r['num_fewshot']}": {key: round(m["value"], 4) for key, m in r["metrics"].items()}
               for r in report["results"]}
    invalid = {f"{r['task']}@{r['num_fewshot']}": r["invalid"] for r in report["results"] if r.get("invalid")}
    return {"results": summary, **({"invalid": invalid} if invalid else {}),
            "seconds": round(time.perf_counter() - start, 2), "report": str(out / "report.json"),
            "files": [str(p) for p in written]}
