"""Metrics as JSON lines (one object per log or eval step) and a loss-curve PNG redrawn from them."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch

from lmstack.errors import LmstackError
from lmstack.io import atomic_open
from lmstack.plots import pyplot, save_png


def peak_memory_mb(device: torch.device) -> float:
    """The run's peak memory: the most GPU memory allocated on CUDA, else the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, appended as the run goes.

    A fresh run starts the file empty; a resumed one (``resume_iter``) keeps the records up to its checkpoint's
    iteration and rewrites the file atomically. A torn last line (the disk filled, the power went mid-write) is
    dropped with a warning, so the resumed run goes on writing valid lines; a bad line before the last one is
    not a torn write and is an error naming it.
    """

    def __init__(self, path: Path, resume_iter: int | None = None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        records = self.read(repair=True) if resume_iter is not None else []
        # A resumed run repeats the steps after its checkpoint: drop what the interrupted run logged for them.
        with atomic_open(path) as f:
            for r in records:
                if r["iter"] <= resume_iter:
                    f.write(json.dumps(r) + "\n")

    def log(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read(self, repair: bool = False) -> list[dict]:
        """The records; a torn last line is left out (``repair``: with a warning on stderr)."""
        if not self.path.is_file():
            return []
        lines = self.path.read_bytes().split(b"\n")
        numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
        records = []
        for n, (lineno, line) in enumerate(numbered):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("iter"), int):
                    raise ValueError("not a record with an integer iter")
            except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                if n < len(numbered) - 1:
                    raise LmstackError(f"{self.path}:{lineno}: not a metrics record ({e}); only a torn last line "
                                       "is repaired, so fix or delete this line") from None
                if repair:
                    print(f"warning: {self.path}:{lineno}: torn last line dropped ({len(line)} bytes: "
                          f"{line[:40]!r}...)", file=sys.stderr, flush=True)
                break
            records.append(record)
        return records


def plot_losses(records: list[dict], path: Path, baseline: float | None = None, title: str = "") -> None:
    """Train loss per logged step and validation loss per eval, with an optional reference line."""
    fig, ax = pyplot().subplots(figsize=(7, 4))
    train = [(r["iter"], r["loss"]) for r in records if "loss" in r]
    val = [(r["iter"], r["val_loss"]) for r in records if "val_loss" in r]
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label="unigram baseline")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, path)
