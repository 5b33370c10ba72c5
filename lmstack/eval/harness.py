"""The evaluation loop: a task's requests, run on an ``LM``, filtered, scored and aggregated as lm-evaluation-harness
does (``ConfigurableTask.construct_requests`` / ``process_results``, ``lm_eval.api.metrics``).

* ``multiple_choice``: one ``loglikelihood(context, target_delimiter + choice)`` per choice; ``acc`` is the argmax
  of the summed log-probabilities, ``acc_norm`` the argmax of log-probability / the choice's length in characters
  (lm-eval's ``completion_len = len(choice)``), ``acc_bytes`` per UTF-8 byte; ties go to the first choice.
* ``generate_until``: one request with ``repeats`` (K) samples sharing the prompt; each ``filter_list`` entry turns
  the K outputs into one answer, and every metric is reported per filter as ``metric,filter`` (lm-eval's keys).
  Per-sample metrics are means with a bootstrap interval; corpus metrics (BLEU, chrF, TER, ROUGE) score the
  filtered answers as one corpus, their interval from ``CORPUS_BOOT`` resampled corpora (up to
  ``CORPUS_CI_MAX_DOCS`` documents). An answer a filter could not find (``[invalid]``) scores 0 and is counted.
* ``loglikelihood_rolling``: the target text's total log-likelihood; ``word_perplexity`` =
  exp(-sum LL / sum words), ``byte_perplexity`` = exp(-sum LL / sum bytes), ``bits_per_byte`` =
  -sum LL / (sum bytes * ln 2), words as ``re.split(r"\\s+", text)`` (lm-eval's ``weighted_perplexity``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lmstack.errors import LmstackError
from lmstack.eval.filters import INVALID, build_filter
from lmstack.eval.lm import LM, GenRequest
from lmstack.eval.metrics import CORPUS_METRICS, SAMPLE_METRICS, bootstrap_ci, sample_metric
from lmstack.eval.tasks import Doc, Task

DEFAULT_FILTERS = [{"name": "none", "filter": [{"function": "take_first"}]}]
DEFAULT_METRICS = {"multiple_choice": ["acc", "acc_norm"], "generate_until": ["exact_match"],
                   "loglikelihood_rolling": ["word_perplexity", "byte_perplexity", "bits_per_byte"]}
CHOICE_METRICS = ("acc", "acc_norm", "acc_bytes")
ROLLING_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")
CORPUS_BOOT = 100  # resamples of a corpus metric's interval (each one rescores the whole corpus)
CORPUS_CI_MAX_DOCS = 300  # past this, no interval (100 rescorings of 3,000 sentences: ~30 s BLEU, ~70 s chrF)
LOWER_IS_BETTER = {"ter", "word_perplexity", "byte_perplexity", "bits_per_byte"}


@dataclass
class Plan:
    """A task checked and bound to its filters and metrics, before any model runs."""
    task: Task
    filters: list[tuple[str, Callable[[list[str]], str]]]
    sample_metrics: list[tuple[str, Callable]]  # (name, fn(prediction, references))
    corpus_metrics: list[str]


def plan(task: Task) -> Plan:
    """Bind a task's ``filter_list`` and ``metric_list`` (unknown filters, metrics or options: one line)."""
    s = task.spec
    entries = s.metric_list or [{"metric": m} for m in DEFAULT_METRICS[s.output_type]]
    sample, corpus = [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "metric" not in entry:
            raise task.error(f"metric_list[{i}] must be a mapping with a 'metric' key")
        name = entry["metric"]
        options = {k: v for k, v in entry.items() if k != "metric"}
        if s.output_type == "multiple_choice":
            valid = CHOICE_METRICS
        elif s.output_type == "loglikelihood_rolling":
            valid = ROLLING_METRICS
        else:
            valid = (*SAMPLE_METRICS, *CORPUS_METRICS)
        if name not in valid:
            raise task.error(f"metric_list[{i}]: metric {name!r} does not apply to {s.output_type} "
                             f"(valid: {', '.join(valid)})")
        if name in CORPUS_METRICS:
            corpus.append(name)
        elif s.output_type == "generate_until":
            try:
                sample.append((name, sample_metric(name, s.lang, **options)))
            except LmstackError as e:
                raise task.error(f"metric_list[{i}]: {e}") from None
        else:
            sample.append((name, None))
    filters = []
    if s.output_type == "generate_until":
        for i, entry in enumerate(s.filter_list or DEFAULT_FILTERS):
            if not isinstance(entry, dict) or "filter" not in entry:
                raise task.error(f"filter_list[{i}] must be a mapping with 'name' and 'filter' (a list of steps)")
            try:
                filters.append((str(entry.get("name", f"filter{i}")),
                                build_filter(entry["filter"], f"filter_list[{i}] ({entry.get('name')})")))
            except LmstackError as e:
                raise task.error(str(e)) from None
    return Plan(task, filters, sample, corpus)


def check(p: Plan, num_fewshot: list[int | None], limit: int | None = None) -> None:
    """Render everything a run will need (contexts at each shot count, targets, choices) on the docs it will
    score, so a template or field error is one line before the model is opened or anything is written."""
    task = p.task
    docs = task.test_docs()[:limit]
    for k in num_fewshot:
        task.contexts(docs, k)
    for d in docs:
        TARGETS[task.spec.output_type](task, d)


TARGETS: dict[str, Callable[[Task, Doc], object]] = {
    "multiple_choice": lambda task, d: task.gold_indices(d, task.doc_to_choice(d)),
    "generate_until": lambda task, d: task.references(d),
    "loglikelihood_rolling": lambda task, d: task.doc_to_target(d),
}


def run(p: Plan, lm: LM, num_fewshot: int | None = None, samples: int | None = None, limit: int | None = None,
        seed: int = 0) -> dict:
    """Run one task at ``num_fewshot`` shots on ``lm``: its metrics (with intervals) and every sample's record."""
    task = p.task
    k = task.spec.num_fewshot if num_fewshot is None else num_fewshot
    docs = task.test_docs()[:limit]
    start = time.perf_counter()
    contexts = task.contexts(docs, k)
    records, values, corpus, extra = RUNNERS[task.spec.output_type](p, lm, docs, contexts, samples, seed)
    metrics = {name: summarise(name, scores, seed) for name, scores in values.items()}
    metrics.update(corpus)
    return {"task": task.name, "group": task.spec.group, "output_type": task.spec.output_type,
            "num_fewshot": k, "n": len(docs), "source": str(task.source), "metrics": metrics, **extra,
            "seconds": round(time.perf_counter() - start, 3), "samples": records}


def summarise(name: str, scores: list[float], seed: int) -> dict:
    """A per-sample metric's mean, lm-eval's standard error (sample std / sqrt(n)) and a 95% bootstrap CI."""
    mean, low, high = bootstrap_ci(scores, seed=seed)
    stderr = float(np.std(scores, ddof=1) / math.sqrt(len(scores))) if len(scores) > 1 else float("nan")
    return {"value": mean, "stderr": stderr, "ci95": [low, high], "higher_is_better": _higher(name),
            "per_sample": True}


def corpus_ci(name: str, answers: list[str], references: list[list[str]], lang: str, seed: int,
              n_boot: int = CORPUS_BOOT) -> dict[str, list[float]]:
    """95% percentile-bootstrap intervals of a corpus metric (Koehn 2004): the corpus resampled by document
    ``n_boot`` times (``numpy.random.default_rng(seed)``), each resample scored whole."""
    rng, n, draws = np.random.default_rng(seed), len(answers), {}
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        scores = CORPUS_METRICS[name]([answers[i] for i in idx], [references[i] for i in idx], lang)
        scores.pop("signature", None)
        for key, value in scores.items():
            draws.setdefault(key, []).append(value)
    return {key: [float(q) for q in np.quantile(values, [0.025, 0.975])] for key, values in draws.items()}


def _higher(name: str) -> bool:
    return name.split(",")[0] not in LOWER_IS_BETTER


def argmax(values: list[float]) -> int:
    """numpy's argmax: the first of equal maxima."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _multiple_choice(p: Plan, lm: LM, docs: list[Doc], contexts: list, samples: int | None, seed: int):
    task = p.task
    delim = task.spec.target_delimiter
    choices = [task.doc_to_choice(d) for d in docs]
    golds = [task.gold_indices(d, c) for d, c in zip(docs, choices)]
    for d, cs in zip(docs, choices):
        if any(c == "" for c in cs):
            raise task.error(f"the document at {d.where} has an empty choice (its length normalises acc_norm)")
    requests = [(ctx, delim + c) for ctx, cs in zip(contexts, choices) for c in cs]
    results = lm.loglikelihood(requests)
    acc = SAMPLE_METRICS["acc"]
    values: dict[str, list[float]] = {f"{name},none": [] for name, _ in p.sample_metrics}
    records, pos = [], 0
    for d, ctx, cs, gold in zip(docs, contexts, choices, golds):
        lls = [ll for ll, _ in results[pos:pos + len(cs)]]
        greedy = [g for _, g in results[pos:pos + len(cs)]]
        pos += len(cs)
        preds = {"acc": argmax(lls), "acc_norm": argmax([ll / len(c) for ll, c in zip(lls, cs)]),
                 "acc_bytes": argmax([ll / len(c.encode("utf-8")) for ll, c in zip(lls, cs)])}
        scores = {}
        for name, _ in p.sample_metrics:
            scores[name] = acc(preds[name], gold)
            values[f"{name},none"].append(scores[name])
        records.append({"doc_id": d.id, "where": d.where, "context": ctx, "choices": cs, "target": gold,
                        "loglikelihoods": lls, "is_greedy": greedy,
                        "predictions": {n: preds[n] for n, _ in p.sample_metrics}, "scores": scores})
    return records, values, {}, {}


def _generate_until(p: Plan, lm: LM, docs: list[Doc], contexts: list, samples: int | None, seed: int):
    task = p.task
    g = task.spec.generation_kwargs
    k = samples or task.spec.repeats
    until = g.get("until", [task.spec.fewshot_delimiter])
    until = [until] if isinstance(until, str) else list(until)
    requests = [GenRequest(context=ctx, until=until, max_gen_toks=int(g.get("max_gen_toks", 256)),
                           do_sample=bool(g.get("do_sample", False)), temperature=float(g.get("temperature", 1.0)),
                           n=k, seed=seed) for ctx in contexts]
    outputs = lm.generate_until(requests)
    if len(outputs) != len(requests) or any(len(o) != k for o in outputs):
        raise LmstackError(f"{lm.name}: expected {k} output(s) for each of {len(requests)} requests")
    references = [task.references(d) for d in docs]
    values: dict[str, list[float]] = {}
    corpus: dict[str, dict] = {}
    invalid: dict[str, int] = {}
    answers: dict[str, list[str]] = {}
    for fname, fn in p.filters:
        answers[fname] = [fn(list(o)) for o in outputs]
        invalid[fname] = sum(a == INVALID for a in answers[fname])
        for mname, metric in p.sample_metrics:
            values[f"{mname},{fname}"] = [metric(a, refs) for a, refs in zip(answers[fname], references)]
        for mname in p.corpus_metrics:
            result = CORPUS_METRICS[mname](answers[fname], references, task.spec.lang)
            signature = result.pop("signature", None)
            intervals = corpus_ci(mname, answers[fname], references, task.spec.lang, seed) \
                if len(docs) <= CORPUS_CI_MAX_DOCS else {}
            for key, value in result.items():
                corpus[f"{key},{fname}"] = {"value": value, "higher_is_better": _higher(key),
                                            **({"ci95": intervals[key]} if key in intervals else {}),
                                            **({"signature": signature} if signature else {})}
    records = []
    for i, (d, ctx) in enumerate(zip(docs, contexts)):
        records.append({"doc_id": d.id, "where": d.where, "context": ctx, "target": references[i],
                        "outputs": outputs[i], "filtered": {f: answers[f][i] for f, _ in p.filters},
                        "scores": {key: v[i] for key, v in values.items()}})
    return records, values, corpus, {"invalid": invalid, "repeats": k}


def _loglikelihood_rolling(p: Plan, lm: LM, docs: list[Doc], contexts: list, samples: int | None, seed: int):
    task = p.task
    texts = [str(task.doc_to_target(d)) for d in docs]
    results = lm.loglikelihood_rolling(texts)
    words = [len(re.split(r"\s+", t)) for t in texts]
    n_bytes = [len(t.encode("utf-8")) for t in texts]
    total = sum(ll for ll, _ in results)
    figures = {"word_perplexity": math.exp(-total / sum(words)), "byte_perplexity": math.exp(-total / sum(n_bytes)),
               "bits_per_byte": -total / sum(n_bytes) / math.log(2)}
    corpus = {f"{name},none": {"value": figures[name], "higher_is_better": False} for name, _ in p.sample_metrics}
    records = [{"doc_id": d.id, "where": d.where, "loglikelihood": ll, "tokens": n, "words": w, "bytes": b}
               for d, (ll, n), w, b in zip(docs, results, words, n_bytes)]
    return records, {}, corpus, {"tokens": sum(n for _, n in results)}


RUNNERS = {"multiple_choice": _multiple_choice, "generate_until": _generate_until,
           "loglikelihood_rolling": _loglikelihood_rolling}
