"""Counting what every stage and rule did, and the report: ``report.json`` plus a readable ``report.md``.

``Stats`` is plain nested dicts of numbers and capped example lists, so a worker's stats pickle cheaply,
are saved with each finished shard (for resuming), and merge by addition.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from lmstack.io import atomic_open, write_json

SNIPPET = 160  # characters of an example document shown in the report
_CAPS = {"examples": 3, "bad_records": 50, "empty_files": 50}  # list lengths kept when merging


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "…"


class Stats:
    def __init__(self, examples: int = 3, data: dict[str, Any] | None = None):
        self.caps = {**_CAPS, "examples": examples}
        self.data: dict[str, Any] = data or {"stages": {}, "rules": {}, "lines": {}, "pii": {}, "langs": {},
                                             "input": {}}

    def enter(self, stage: str, chars: int) -> None:
        s = self.data["stages"].setdefault(stage, {"docs_in": 0, "chars_in": 0, "docs_out": 0, "chars_out": 0})
        s["docs_in"] += 1
        s["chars_in"] += chars

    def leave(self, stage: str, chars: int) -> None:
        s = self.data["stages"][stage]
        s["docs_out"] += 1
        s["chars_out"] += chars

    def drop(self, rule: str, source: str, chars: int, text: str, detail: str) -> None:
        r = self.data["rules"].setdefault(rule, {"docs": 0, "chars": 0, "examples": []})
        r["docs"] += 1
        r["chars"] += chars
        if len(r["examples"]) < self.caps["examples"]:
            r["examples"].append({"source": source, "detail": detail, "text": _snippet(text)})

    def line_removed(self, rule: str, chars: int, example: str) -> None:
        r = self.data["lines"].setdefault(rule, {"lines": 0, "chars": 0, "examples": []})
        r["lines"] += 1
        r["chars"] += chars + 1  # with its newline
        if len(r["examples"]) < self.caps["examples"]:
            r["examples"].append(_snippet(example))

    def count(self, section: str, key: str, n: int = 1) -> None:
        """Add ``n`` to a plain counter: pii kinds, languages, input figures."""
        self.data[section][key] = self.data[section].get(key, 0) + n

    def note(self, section: str, key: str, item: Any) -> None:
        """Append to a capped list, e.g. ("input", "bad_records", {...})."""
        items = self.data[section].setdefault(key, [])
        if len(items) < self.caps[key]:
            items.append(item)

    def merge(self, other: Stats) -> Stats:
        _merge(self.data, other.data, self.caps)
        return self


def _merge(into: dict, new: dict, caps: dict[str, int], key: str = "") -> None:
    for k, v in new.items():
        if isinstance(v, dict):
            _merge(into.setdefault(k, {}), v, caps, k)
        elif isinstance(v, list):
            items = into.setdefault(k, [])
            items += v[: max(caps.get(k, 0) - len(items), 0)]
        else:
            into[k] = into.get(k, 0) + v


def build_report(stats: Stats, clusters: Counter, meta: dict[str, Any]) -> dict[str, Any]:
    """Everything in one JSON-able dict: totals, per-stage flow, rules by documents removed, PII, dedup."""
    stages = stats.data["stages"]
    first, last = stages.get("normalize", {}), stages.get("near_dedup") or list(stages.values() or [{}])[-1]
    rules = dict(sorted(stats.data["rules"].items(), key=lambda kv: -kv[1]["docs"]))
    docs_in, docs_out = first.get("docs_in", 0), last.get("docs_out", 0)
    return {
        **meta,
        "documents_in": docs_in, "documents_out": docs_out,
        "chars_in": first.get("chars_in", 0), "chars_out": last.get("chars_out", 0),
        "stages": stages,
        "rules": rules,
        "line_rules": stats.data["lines"],
        "pii": stats.data["pii"],
        "languages": dict(Counter(stats.data["langs"]).most_common()),
        "dedup": {"clusters": len(clusters), "duplicates": sum(clusters.values()),
                  "largest_clusters": [{"kept": k, "duplicates_removed": n} for k, n in clusters.most_common(5)]},
        "input": stats.data["input"],
    }


def write_report(out: Path, report: dict[str, Any]) -> None:
    write_json(out / "report.json", report)
    with atomic_open(out / "report.md") as f:
        f.write(render_markdown(report))


def render_markdown(r: dict[str, Any]) -> str:
    lines = ["# lmstack clean report", "",
             f"{r['documents_in']:,} documents ({r['chars_in']:,} characters) in, "
             f"{r['documents_out']:,} documents ({r['chars_out']:,} characters) out.", "",
             f"Profile: **{r.get('profile', 'curated')}**"
             + (f"; rules disabled: {', '.join(r['rules_disabled'])}" if r.get("rules_disabled") else "") + ".", "",
             "| stage | docs in | docs out | removed | chars in | chars out |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in r["stages"].items():
        lines.append(f"| {name} | {s['docs_in']:,} | {s['docs_out']:,} | {s['docs_in'] - s['docs_out']:,} "
                     f"| {s['chars_in']:,} | {s['chars_out']:,} |")
    lines += ["", "## Documents removed, by rule", "", "| rule | docs | chars | example |", "|---|---:|---:|---|"]
    for name, rule in r["rules"].items():
        ex = rule["examples"][0] if rule["examples"] else {"detail": "", "text": ""}
        lines.append(f"| {name} | {rule['docs']:,} | {rule['chars']:,} | "
                     f"{_cell(ex['detail'])}: {_cell(ex['text'][:80])} |")
    if r["line_rules"]:
        lines += ["", "## Lines removed (the document is kept)", "", "| rule | lines | chars | example |",
                  "|---|---:|---:|---|"]
        for name, rule in sorted(r["line_rules"].items(), key=lambda kv: -kv[1]["lines"]):
            lines.append(f"| {name} | {rule['lines']:,} | {rule['chars']:,} | "
                         f"{_cell((rule['examples'] or [''])[0][:80])} |")
    lines += ["", "## Personal data replaced", "", "| kind | count |", "|---|---:|"]
    lines += [f"| {k} | {n:,} |" for k, n in sorted(r["pii"].items(), key=lambda kv: -kv[1])] or ["| (none) | 0 |"]
    d = r["dedup"]
    lines += ["", "## Deduplication", "", f"{d['duplicates']:,} duplicates removed from {d['clusters']:,} clusters."]
    lines += [f"- kept `{c['kept']}`, removed {c['duplicates_removed']:,} copies" for c in d["largest_clusters"]]
    langs = list(r["languages"].items())
    others = f", {len(langs) - 12} others: {sum(n for _, n in langs[12:]):,}" if len(langs) > 12 else ""
    lines += ["", "## Languages", "", (", ".join(f"{k}: {n:,}" for k, n in langs[:12]) or "(none)") + others]
    inp = r["input"]
    lines += ["", "## Input", "", f"{inp.get('files', 0):,} files, {inp.get('bytes', 0):,} bytes; "
              f"{inp.get('undecodable_bytes', 0):,} undecodable bytes replaced; "
              f"{inp.get('bad_record_count', 0):,} records skipped; {len(inp.get('empty_files', [])):,} empty files."]
    lines += [f"- {b['file']} line {b['line']}: {b['error']}" for b in inp.get("bad_records", [])[:10]]
    if "seconds" in r:
        lines += ["", f"Took {r['seconds']:.1f} s ({r.get('docs_per_s', 0):,.0f} documents/s, "
                      f"{r.get('mb_per_s', 0):.2f} MB/s)."]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
