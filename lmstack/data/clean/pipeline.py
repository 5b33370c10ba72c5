"""``lmstack clean``: turn a raw corpus into deduplicated, filtered, scrubbed .jsonl shards plus a report.

Two phases. (1) The per-document stages, normalise -> language ID -> Gopher repetition -> Gopher quality
-> C4 -> PII, are pure functions of one document, so the input is cut into tasks that a process pool runs
in parallel. (2) Deduplication needs every document kept before, so the parent takes the tasks' results
in input order, drops exact and near duplicates against its index and writes the shard. Per task it writes,
each atomically and in this order: ``removed/shard-N.jsonl`` (every dropped document with the rule that
dropped it), ``dedup_index/shard-N.npz``, ``shard-N.jsonl`` (the kept documents, ``text`` first) and the
marker ``.state/done/N.json``. A killed run leaves no torn file; run the same command again to resume.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from lmstack.data.clean import c4, gopher, pii
from lmstack.data.clean.config import CleanConfig
from lmstack.data.clean.dedup import DedupIndex, MinHasher, exact_key, shingles
from lmstack.data.clean.langid import detect
from lmstack.data.clean.normalize import normalize
from lmstack.data.clean.readers import Doc, Task, find_files, plan, read_task
from lmstack.data.clean.report import Stats, build_report, write_report
from lmstack.data.clean.words import Words
from lmstack.errors import LmstackError
from lmstack.io import atomic_open, read_json, write_json

STAGES = ("normalize", "langid", "gopher_repetition", "gopher_quality", "c4", "pii", "exact_dedup", "near_dedup")
RULES = ("langid.keep", *gopher.REPETITION, *gopher.QUALITY, *c4.BEFORE_LINES, *c4.LINE_RULES, *c4.AFTER_LINES,
         *(f"pii.{k}" for k in pii.KINDS), "dedup.exact", "dedup.near")  # the names `disable` accepts
Failure = tuple[str, str]  # (rule, detail)


def clean(inputs: list[str], out: Path | None = None, config: CleanConfig | None = None,
          overwrite: bool = False) -> dict[str, Any]:
    """Filter, deduplicate and scrub a raw corpus into .jsonl shards that `lmstack prepare` reads.
    Settings: --config FILE.yaml (lmstack/configs/clean.yaml documents every key) and --section.key value,
    e.g. --dedup.threshold 0.7 --disable c4.terminal_punct,gopher.stop_words --workers 2.
    --profile curated (the default: text written to be read) or web (C4 / Gopher as published, for crawled
    pages) chooses the thresholds; explicit keys apply on top of it.

    Args:
        inputs: .txt, .jsonl, .parquet files or folders of them
        out: output folder: shard-*.jsonl, removed/, dedup_index/, report.json, report.md
        overwrite: delete an earlier run's outputs in --out first (otherwise an interrupted run resumes)
    """
    cfg = config or CleanConfig()
    if out is None:
        raise LmstackError("--out DIR is required")
    unknown = [r for r in cfg.disable if r not in RULES]
    if unknown:
        raise LmstackError(f"disable: unknown rule '{unknown[0]}'; known rules: {', '.join(RULES)}")
    t0 = time.perf_counter()
    out = Path(out)
    plan_stats = Stats(cfg.examples)
    tasks = plan(find_files(inputs), cfg.read, plan_stats)
    done = _open_run(out, tasks, cfg, overwrite)

    index = DedupIndex(cfg.dedup)
    for folder in cfg.dedup.index_in:
        index.load(Path(folder))
    stats, clusters = Stats(cfg.examples).merge(plan_stats), Counter()
    _load_finished(out, done, index, stats, clusters)

    todo = [t for t in tasks if t.index not in done]
    run_stats = Stats(cfg.examples)
    with tqdm(total=sum(t.size for t in todo), unit="B", unit_scale=True, desc="clean", disable=not todo) as bar:
        for result in _run_tasks(todo, cfg):
            shard_stats, shard_clusters = _finish_task(result, index, out, cfg)
            run_stats.merge(shard_stats)
            clusters.update(shard_clusters)
            bar.update(result.size)
    stats.merge(run_stats)

    seconds = time.perf_counter() - t0
    ran = run_stats.data["stages"].get("normalize", {})
    meta = {"inputs": [str(i) for i in inputs], "out": str(out), "config": _plain(cfg),
            "profile": cfg.profile, "rules_disabled": cfg.disable,
            "tasks": len(tasks), "tasks_resumed": len(done), "seconds": round(seconds, 2),
            "docs_per_s": round(ran.get("docs_in", 0) / seconds, 1),
            "mb_per_s": round(sum(t.size for t in todo) / 2**20 / seconds, 3)}
    report = build_report(stats, clusters, meta)
    write_report(out, report)
    return {
        "out": str(out), "profile": cfg.profile,
        **{k: report[k] for k in ("documents_in", "documents_out", "chars_in", "chars_out")},
        "removed": {s: v["docs_in"] - v["docs_out"] for s, v in report["stages"].items()}, "pii": report["pii"],
        "bad_records": report["input"].get("bad_record_count", 0),
        "undecodable_bytes": report["input"].get("undecodable_bytes", 0),
        **{k: meta[k] for k in ("tasks_resumed", "seconds", "docs_per_s", "mb_per_s")},
        "report": str(out / "report.md"),
    }


# --- phase 1: per-document stages, in worker processes -------------------------------------------------

class Kept(NamedTuple):
    """A document that passed the per-document stages, with what deduplication needs to judge it."""

    source: str
    line: str  # its output record, already JSON
    key: bytes  # exact-duplicate key
    sig: np.ndarray  # MinHash signature
    shingles: np.ndarray  # sorted shingle hashes
    chars: int


@dataclass
class TaskResult:
    index: int
    size: int
    kept: list[Kept]
    removed: list[str]  # JSON records of the documents dropped
    stats: dict


class Cleaner:
    """The per-document stages for one config. Each stage returns None, or the (rule, detail) that failed."""

    def __init__(self, cfg: CleanConfig):
        self.cfg, self.enabled = cfg, set(RULES) - set(cfg.disable)
        self.pii_kinds = [k for k in pii.KINDS if f"pii.{k}" in self.enabled]
        self.hasher = MinHasher(cfg.dedup.num_perm, cfg.dedup.seed)
        self.stages: list[tuple[str, Callable[[Doc, Stats], Failure | None]]] = [
            ("normalize", self._normalize), ("langid", self._langid),
            ("gopher_repetition", lambda d, s: self._rules(d, gopher.REPETITION, cfg.gopher)),
            ("gopher_quality", lambda d, s: self._rules(d, gopher.QUALITY, cfg.gopher)),
            ("c4", self._c4), ("pii", self._pii)]
        self._words: Words | None = None

    def run_task(self, task: Task) -> TaskResult:
        stats = Stats(self.cfg.examples)
        kept, removed = [], []
        for doc in read_task(task, self.cfg.read, stats):
            failed = self.process(doc, stats)
            if failed:
                removed.append(self._removed_record(doc, stats, *failed))
                continue
            shingle_set = shingles(doc.text, doc.lang, self.cfg.dedup)
            line = json.dumps({"text": doc.text, **doc.meta, "clean": {"source": doc.source, "lang": doc.lang}},
                              ensure_ascii=False)
            kept.append(Kept(doc.source, line, exact_key(doc.text), self.hasher.signature(shingle_set), shingle_set,
                             len(doc.text)))
        return TaskResult(task.index, task.size, kept, removed, stats.data)

    def process(self, doc: Doc, stats: Stats) -> tuple[str, str, str] | None:
        """Run every stage; returns (stage, rule, detail) of the first failure, or None if the doc survives."""
        for stage, run in self.stages:
            stats.enter(stage, len(doc.text))
            failed = run(doc, stats)
            if failed:
                return (stage, *failed)
            stats.leave(stage, len(doc.text))
        return None

    def words(self, doc: Doc) -> Words:
        """The document's ``Words``, rebuilt only when a stage has changed its text."""
        if self._words is None or self._words.text is not doc.text:
            self._words = Words(doc.text, doc.lang, self.cfg.gopher.cjk_words)
        return self._words

    def _normalize(self, doc: Doc, stats: Stats) -> Failure | None:
        doc.text = normalize(doc.text, self.cfg.normalize)
        return None if doc.text else ("normalize.empty", "no text left after normalisation")

    def _langid(self, doc: Doc, stats: Stats) -> Failure | None:
        c = self.cfg.langid
        doc.lang, doc.lang_score = detect(doc.text, c)
        stats.count("langs", doc.lang)
        if "langid.keep" in self.enabled and (doc.lang not in c.keep or doc.lang_score < c.min_score):
            return "langid.keep", f"language {doc.lang} (p={doc.lang_score:.2f}), keeping {', '.join(c.keep)}"
        return None

    def _rules(self, doc: Doc, rules: dict, section: Any) -> Failure | None:
        w = self.words(doc)
        for name, rule in rules.items():
            if name in self.enabled and (detail := rule(w, section)):
                return name, detail
        return None

    def _c4(self, doc: Doc, stats: Stats) -> Failure | None:
        failed = self._rules(doc, c4.BEFORE_LINES, self.cfg.c4)
        if failed:
            return failed
        original = doc.text
        doc.text, lines = c4.filter_lines(self.words(doc), self.cfg.c4, self.enabled)
        failed = ("c4.empty", f"all {len(lines)} lines fail the C4 line rules") if not doc.text else \
            self._rules(doc, c4.AFTER_LINES, self.cfg.c4)
        if failed:
            doc.text = original  # removed/ keeps the page as it was before its lines were cut
            return failed
        for rule, line in lines:
            stats.line_removed(rule, len(line), self._private(line))
        return None

    def _pii(self, doc: Doc, stats: Stats) -> Failure | None:
        doc.text, counts = pii.scrub(doc.text, self.pii_kinds)
        for kind, n in counts.items():
            stats.count("pii", kind, n)
        return None

    def _removed_record(self, doc: Doc, stats: Stats, stage: str, rule: str, detail: str) -> str:
        """Count a dropped document and return its removed/ record."""
        text = self._private(doc.text)
        stats.drop(rule, doc.source, len(doc.text), text, detail)
        info = {"source": doc.source, "lang": doc.lang, "stage": stage, "rule": rule, "detail": detail}
        return json.dumps({"text": text, **doc.meta, "clean": info}, ensure_ascii=False)

    def _private(self, text: str) -> str:
        """Text that leaves the pipeline without passing the PII stage (removed/, report examples), scrubbed."""
        return pii.scrub(text, self.pii_kinds)[0] if self.cfg.pii.scrub_removed else text


_worker: Cleaner | None = None


def _init_worker(cfg: CleanConfig) -> None:
    global _worker
    _worker = Cleaner(cfg)


def _run_in_worker(task: Task) -> TaskResult:
    return _worker.run_task(task)


def _run_tasks(tasks: list[Task], cfg: CleanConfig):
    """Results in task order: in this process for one worker, else from a pool."""
    workers = min(cfg.workers or os.cpu_count() or 1, max(len(tasks), 1))
    if workers == 1:
        cleaner = Cleaner(cfg)
        yield from map(cleaner.run_task, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (cfg,)) as pool:
        yield from pool.imap(_run_in_worker, tasks)


# --- phase 2: deduplication and writing, in this process, in task order ---------------------------------

def _finish_task(result: TaskResult, index: DedupIndex, out: Path, cfg: CleanConfig) -> tuple[Stats, Counter]:
    stats, clusters = Stats(cfg.examples, result.stats), Counter()
    enabled = set(RULES) - set(cfg.disable)
    removed, kept, first_new = list(result.removed), [], len(index.sources)
    for doc in result.kept:
        stats.enter("exact_dedup", doc.chars)
        first = index.find_exact(doc.key) if "dedup.exact" in enabled else None
        if first:
            removed.append(_duplicate(doc.line, stats, "exact_dedup", "dedup.exact", first, 1.0))
            clusters[first] += 1
            continue
        stats.leave("exact_dedup", doc.chars)
        stats.enter("near_dedup", doc.chars)
        near = index.find_near(doc.sig, doc.shingles) if "dedup.near" in enabled else None
        if near:
            removed.append(_duplicate(doc.line, stats, "near_dedup", "dedup.near", *near))
            clusters[near[0]] += 1
            continue
        stats.leave("near_dedup", doc.chars)
        index.add(doc.source, doc.key, doc.sig, doc.shingles)
        kept.append(doc.line)
    name = f"shard-{result.index:05d}"
    _write_lines(out / "removed" / f"{name}.jsonl", removed)
    if kept:
        index.save_shard(out / "dedup_index", result.index, first_new)
    _write_lines(out / f"{name}.jsonl", kept)
    write_json(out / ".state" / "done" / f"{result.index:05d}.json", {"stats": stats.data, "clusters": clusters})
    return stats, clusters


def _duplicate(line: str, stats: Stats, stage: str, rule: str, first: str, similarity: float) -> str:
    record = json.loads(line)
    source = record["clean"]["source"]
    detail = f"duplicate of {first} (similarity {similarity:.2f})"
    stats.drop(rule, source, len(record["text"]), record["text"], detail)
    record["clean"].update(stage=stage, rule=rule, detail=detail, duplicate_of=first, similarity=round(similarity, 4))
    return json.dumps(record, ensure_ascii=False)


def _write_lines(path: Path, lines: list[str]) -> None:
    if lines:
        with atomic_open(path) as f:
            f.write("\n".join(lines) + "\n")


# --- resuming ------------------------------------------------------------------------------------------

OUTPUTS = ("removed", "dedup_index", ".state", "report.json", "report.md")


def _open_run(out: Path, tasks: list[Task], cfg: CleanConfig, overwrite: bool) -> set[int]:
    """Start a run in ``out`` or resume the one there; returns the indices of tasks already finished."""
    fingerprint = {"files": sorted({(t.path, os.stat(t.path).st_size, os.stat(t.path).st_mtime_ns) for t in tasks}),
                   "config": {k: v for k, v in _plain(cfg).items() if k not in ("workers", "examples")}}
    fingerprint = json.loads(json.dumps(fingerprint))
    state = out / ".state" / "run.json"
    if overwrite and out.exists():
        for p in [*out.glob("shard-*.jsonl"), *(out / name for name in OUTPUTS)]:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    if state.exists():
        if read_json(state) != fingerprint:
            raise LmstackError(f"{out}: holds a clean run with other inputs or config; "
                               "pass --overwrite to replace it, or choose another --out")
        return {int(p.stem) for p in (out / ".state" / "done").glob("*.json")}
    if out.exists() and any(out.iterdir()):
        raise LmstackError(f"{out}: exists and is not empty; choose a new folder for --out")
    write_json(state, fingerprint)
    return set()


def _load_finished(out: Path, done: set[int], index: DedupIndex, stats: Stats, clusters: Counter) -> None:
    """Bring back what the finished shards of an interrupted run left: statistics, clusters, index entries."""
    for i in sorted(done):
        marker = read_json(out / ".state" / "done" / f"{i:05d}.json")
        stats.merge(Stats(stats.caps["examples"], marker["stats"]))
        clusters.update(marker["clusters"])
        if (out / "dedup_index" / f"shard-{i:05d}.npz").exists():
            index.load_shard(out / "dedup_index" / f"shard-{i:05d}.npz")


def _plain(cfg: CleanConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
