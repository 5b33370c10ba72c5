"""An evaluation's outputs: ``report.json`` (the run's configuration, each task x shots result with its metrics and
every per-sample record), ``report.md`` (a table of task x shots x metric) and plots: accuracy vs shots (a shot
sweep) and one bar chart per ``group:`` of several tasks (prompting methods side by side: direct vs
chain-of-thought vs self-consistency). All written atomically; rewritten as each task finishes.
"""

from __future__ import annotations

import re
from pathlib import Path

from lmstack.io import atomic_open, write_json
from lmstack.plots import han_fonts, pyplot, save_png

def write_report(out: Path, report: dict) -> list[Path]:
    """Write report.json, report.md and the plots under ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    with atomic_open(out / "report.md") as f:
        f.write(markdown(report))
    written = [out / "report.json", out / "report.md"]
    if (path := plot_shots(report["results"], out / "accuracy_vs_shots.png")) is not None:
        written.append(path)
    for group, results in groups(report["results"]).items():
        written.append(plot_methods(group, results, out / f"methods_{_slug(group)}.png"))
    return written


def markdown(report: dict) -> str:
    lines = [f"# Evaluation: {report['config'].get('model') or report['config'].get('base_url')}", "",
             "| task | shots | metric | value | 95% CI | n | invalid |", "|---|---:|---|---:|---|---:|---:|"]
    for r in report["results"]:
        for key, m in r["metrics"].items():
            ci = f"{m['ci95'][0]:.4f}-{m['ci95'][1]:.4f}" if "ci95" in m else ""
            invalid = r.get("invalid", {}).get(key.split(",", 1)[1], "") if "," in key else ""
            lines.append(f"| {r['task']} | {r['num_fewshot']} | {key} | {m['value']:.4f} | {ci} | {r['n']} | "
                         f"{invalid} |")
    signatures = sorted({m["signature"] for r in report["results"] for m in r["metrics"].values() if "signature" in m})
    if signatures:
        lines += ["", "sacrebleu signatures:", ""] + [f"- `{s}`" for s in signatures]
    return "\n".join(lines) + "\n"


def groups(results: list[dict]) -> dict[str, list[dict]]:
    """Results of groups with at least two tasks (methods to compare)."""
    by: dict[str, list[dict]] = {}
    for r in results:
        if r.get("group"):
            by.setdefault(r["group"], []).append(r)
    return {g: rs for g, rs in by.items() if len({r["task"] for r in rs}) > 1}


def _accuracy_keys(r: dict) -> list[str]:
    """A result's per-sample metrics (means in 0-1, with intervals): what an accuracy plot shows."""
    return [k for k, m in r["metrics"].items() if m.get("per_sample")]


def plot_shots(results: list[dict], path: Path) -> Path | None:
    """Accuracy vs number of shots, one line per task and metric, when a task ran at several shot counts."""
    series: dict[str, list[tuple[int, dict]]] = {}
    for r in results:
        for key in _accuracy_keys(r):
            series.setdefault(f"{r['task']} {key}", []).append((r["num_fewshot"], r["metrics"][key]))
    series = {label: sorted(points, key=lambda p: p[0]) for label, points in series.items() if len(points) > 1}
    if not series:
        return None
    plt = pyplot()
    han_fonts(series)
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in series.items():
        ks = [k for k, _ in points]
        values = [m["value"] for _, m in points]
        low = [m["value"] - m["ci95"][0] for _, m in points]
        high = [m["ci95"][1] - m["value"] for _, m in points]
        ax.errorbar(ks, values, yerr=[low, high], marker="o", capsize=3, label=label)
    ax.set_xlabel("shots (k)")
    ax.set_ylabel("accuracy (95% bootstrap CI)")
    ax.set_xticks(sorted({k for points in series.values() for k, _ in points}))
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)
    return path


def plot_methods(group: str, results: list[dict], path: Path) -> Path:
    """One bar per task x shots x metric of a group (e.g. direct vs CoT vs self-consistency), with 95% CIs."""
    bars = [(f"{r['task']} k={r['num_fewshot']}\n{key}", r["metrics"][key]) for r in results
            for key in _accuracy_keys(r)]
    plt = pyplot()
    han_fonts([group, *(label for label, _ in bars)])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(bars)), 4.5))
    values = [m["value"] for _, m in bars]
    err = [[m["value"] - m["ci95"][0] for _, m in bars], [m["ci95"][1] - m["value"] for _, m in bars]]
    colors = [f"C{sorted({r['task'] for r in results}).index(label.split(' ')[0]) % 10}" for label, _ in bars]
    ax.bar(range(len(bars)), values, yerr=err, capsize=3, color=colors)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([label for label, _ in bars], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("accuracy (95% bootstrap CI)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{group}: prompting methods")
    ax.grid(axis="y", alpha=0.3)
    save_png(fig, path)
    return path


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)
