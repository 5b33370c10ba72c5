"""A grid of small pretraining runs for a scaling-law fit: model sizes x token budgets, one ``lmstack train``
run each (in-process, one after another) in OUT/runs/<name>/, then OUT/runs.jsonl (``runs.collect``).

Each run's learning rate warms up for min(``train.warmup_iters``, a tenth of the run) steps, then follows a
cosine decayed to ``train.min_lr`` at the run's *own* last step (``lr_decay_iters`` = ``max_iters``): Hoffmann
et al. (2022, section 3.1 and figure A1) show that a schedule longer than the run overestimates the loss of
short runs, which is what biased Kaplan et al.'s (2020) allocation. The token budget D becomes
max_iters = ceil(D / (batch_size x grad_accum x block_size)) steps, so the tokens trained are D rounded up to
whole steps (runs.jsonl records the count trained). Finished runs are skipped, so an interrupted sweep resumes;
an unfinished one continues from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from lmstack.config import to_dict
from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.io import read_json
from lmstack.scaling.runs import EVAL_FILE, collect, write_runs
from lmstack.train.config import TrainConfig
from lmstack.train.pretrain import train

SIZE = re.compile(r"(\d+)x(\d+)")


@dataclass
class SweepConfig:
    data: Path = Path("data")  # a folder written by `lmstack prepare`: every run trains and is evaluated on it
    out: Path = Path("runs/scaling")
    sizes: list[str] = field(default_factory=lambda: ["1x32", "2x48", "2x64", "3x96", "4x128"])  # LAYERSxWIDTH
    tokens: list[int] = field(default_factory=lambda: [200_000, 600_000])  # token budgets D of every size
    head_dim: int = 16  # n_head = width / head_dim
    # None: every run trains at train.lr. A width W: a run of width w trains at lr (and min_lr) x W / w, the
    # Adam learning rate of muP's hidden weights (Yang et al. 2022), here for every parameter: wider models
    # otherwise overshoot at the lr tuned for narrow ones, and the sweep's law misses them.
    lr_width: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)  # everything else of each run (model family, lr, ...)

    def __post_init__(self) -> None:
        for size in self.sizes:
            m = SIZE.fullmatch(str(size).strip())
            if not m or int(m[1]) <= 0 or int(m[2]) <= 0:
                raise LmstackError(f"sizes: '{size}' is not LAYERSxWIDTH (e.g. 2x64)")
            if int(m[2]) % self.head_dim:
                raise LmstackError(f"sizes: width {m[2]} of '{size}' is not a multiple of head_dim {self.head_dim}")
        for tokens in self.tokens:
            if tokens <= 0:
                raise LmstackError(f"tokens: {tokens} must be positive")
        if self.lr_width is not None and self.lr_width <= 0:
            raise LmstackError(f"lr_width: {self.lr_width} must be positive (or unset)")
        if not self.sizes or not self.tokens:
            raise LmstackError("sizes and tokens each need at least one value")


def run_configs(cfg: SweepConfig) -> dict[str, TrainConfig]:
    """The grid as one ``TrainConfig`` per run name (``L{layers}-d{width}-D{tokens}``)."""
    base = cfg.train
    per_step = base.batch_size * base.grad_accum * base.model.block_size
    runs = {}
    for size in cfg.sizes:
        layers, width = map(int, SIZE.fullmatch(size.strip()).groups())
        model = base.model.replace(n_layer=layers, n_embd=width, n_head=width // cfg.head_dim, n_kv_head=None,
                                   head_dim=None, intermediate_size=None)
        scale = cfg.lr_width / width if cfg.lr_width else 1.0
        for tokens in cfg.tokens:
            iters = max(1, math.ceil(tokens / per_step))
            name = f"L{layers}-d{width}-D{tokens}"
            runs[name] = dataclasses.replace(
                base, data=cfg.data, out=cfg.out / "runs" / name, model=model, max_iters=iters,
                lr=base.lr * scale, min_lr=base.min_lr * scale,
                lr_decay_iters=None, schedule="cosine", warmup_iters=min(base.warmup_iters, iters // 10),
                eval_interval=iters, checkpoint_interval=iters, log_interval=min(base.log_interval, iters))
    return runs


def _state(run: Path) -> str:
    """"finished", "partial" (a checkpoint to continue), "stale" (files but no checkpoint) or "new"."""
    state_file = run / "checkpoint" / "trainer_state.json"
    if state_file.is_file():
        state = read_json(state_file)
        done = state["iter"] >= state["config"]["max_iters"] and (run / "model" / "config.json").is_file()
        return "finished" if done else "partial"
    return "stale" if (run / "metrics.jsonl").is_file() else "new"


def sweep(cfg: SweepConfig, overwrite: bool = False) -> dict:
    """Train every run of the grid not yet finished, then collect all of them into OUT/runs.jsonl."""
    runs = run_configs(cfg)
    for split in ("train", "val"):  # inputs checked before anything is written
        TokenShards(cfg.data, split).check_block(cfg.train.model.block_size)
    for run_cfg in runs.values():
        if not overwrite and _state(run_cfg.out) in ("finished", "partial"):
            saved = read_json(run_cfg.out / "train_config.json")
            wanted = json.loads(json.dumps(to_dict(run_cfg)))
            changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
            if changed:
                raise LmstackError(f"{run_cfg.out}: an earlier run with other settings ({', '.join(changed)}); "
                                   "pass --overwrite to retrain it, or choose another --out")
    trained = []
    for name, run_cfg in runs.items():
        state = "new" if overwrite else _state(run_cfg.out)
        if state == "finished":
            continue
        (run_cfg.out / EVAL_FILE).unlink(missing_ok=True)  # the exact val loss of a replaced run is stale
        train(run_cfg, resume=state == "partial", overwrite=overwrite or state == "stale")
        trained.append(name)
    records = [collect(run_cfg.out, cfg.data) for run_cfg in runs.values()]
    write_runs(cfg.out / "runs.jsonl", records)
    return {"runs": len(records), "trained": len(trained), "skipped": len(records) - len(trained),
            "runs_file": str(cfg.out / "runs.jsonl")}
