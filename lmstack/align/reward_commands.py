"""``lmstack train-reward`` and ``lmstack reward-eval``: a Bradley-Terry reward model on preference pairs, and how
well a reward model orders held-out pairs.

    start folder (a decoder, an encoder, or a reward model) + preference files (trl / sharegpt / hh-rlhf / openai)
      -> reward_model.PairText (chat template or [CLS] x [SEP] y [SEP]) -> Trainer(BradleyTerry) -> out/model
    reward model folder + preference file -> rewards of both answers -> accuracy, margins, margins.png, report.json

``out/model`` is a one-label ``*ForSequenceClassification`` directory that transformers loads with the same
scores, and that PPO / GRPO read with ``reward_model.RewardScorer``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmstack.align.bradley_terry import BradleyTerry
from lmstack.align.reward_model import EncodedPair, PairText, RewardScorer, TextPair, reward_text
from lmstack.data.preferences import Preference, PreferenceFormat, read_preferences
from lmstack.devices import resolve_device
from lmstack.data.splits import hold_out
from lmstack.errors import LmstackError
from lmstack.io import write_json
from lmstack.train.checkpoint import check_run_dir
from lmstack.train.config import LoopConfig
from lmstack.plots import pyplot, save_png
from lmstack.train.metrics import peak_memory_mb
from lmstack.train.trainer import Trainer


@dataclass
class RewardConfig(LoopConfig):
    model: Path = Path("runs/demo/train/model")  # where training starts: a decoder, a BERT encoder, a reward model
    data: list[Path] = field(default_factory=lambda: [Path("runs/demo/corpus/preferences_train.jsonl")])
    val_data: list[Path] = field(default_factory=list)  # empty: hold out val_fraction of data
    val_fraction: float = 0.1
    format: PreferenceFormat = "auto"  # trl, sharegpt, hh-rlhf, openai, or auto per record
    max_len: int | None = None  # tokens per prompt + answer; None: the model's context
    margin: float = 0.0  # m in -log sigmoid(r_c - r_r - m), for pairs without their own "margin" field
    center_rewards_coefficient: float = 0.0  # c * mean((r_c + r_r)^2), trl's reward centering; 0: off
    out: Path = Path("runs/reward")
    # the loop's defaults, for a reward model
    batch_size: int = 16
    max_iters: int = 300
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_iters: int = 20
    weight_decay: float = 0.0
    eval_interval: int = 100
    eval_iters: int = 10
    checkpoint_interval: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.val_fraction < 1:
            raise LmstackError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.center_rewards_coefficient < 0:
            raise LmstackError(f"center_rewards_coefficient must be >= 0, got {self.center_rewards_coefficient}")
        if self.max_len is not None and self.max_len < 2:
            raise LmstackError(f"max_len must be at least 2, got {self.max_len}")


def read_all(paths: list[Path], fmt: PreferenceFormat, skipped: list[str]) -> list[Preference]:
    """The comparisons of every file (hh-rlhf transcripts without a final answer are collected in ``skipped``)."""
    if not paths:
        raise LmstackError("no preference files given (--data)")
    return [r for path in paths for r in read_preferences(path, fmt, skipped)]


def split_pairs(cfg: RewardConfig, text: PairText) -> tuple[list[EncodedPair], list[EncodedPair], dict]:
    """Train and validation pairs as ids: --val_data, or a seeded val_fraction of --data (at least one pair)."""
    skipped: list[str] = []
    records = read_all(cfg.data, cfg.format, skipped)
    if cfg.val_data:
        val_records = read_all(cfg.val_data, cfg.format, skipped)
    else:
        records, val_records = hold_out(records, cfg.val_fraction, cfg.seed, "preference pair")
    train, stats = text.encode(records, cfg.margin)
    val, val_stats = text.encode(val_records, cfg.margin)
    return train, val, {**stats, "val_pairs": len(val), "val_truncated": val_stats["truncated"],
                        "skipped": len(skipped)}


def pairwise(scorer: RewardScorer, pairs: list[EncodedPair]) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_c, r_r), each [N]: the rewards of the chosen and the rejected answer of every pair."""
    chosen = scorer.score_rows([TextPair(p.prompt, p.chosen) for p in pairs])
    rejected = scorer.score_rows([TextPair(p.prompt, p.rejected) for p in pairs])
    return chosen, rejected


def pair_report(chosen: torch.Tensor, rejected: torch.Tensor, pairs: list[EncodedPair],
                groups: list[str] | None = None) -> dict:
    """Accuracy (r_c > r_r), the margins' mean / median, mean rewards, and accuracy per group (a record's kind)."""
    margins = (chosen - rejected).tolist()
    report = {"pairs": len(pairs), "accuracy": sum(m > 0 for m in margins) / len(margins),
              "mean_margin": statistics.fmean(margins), "median_margin": statistics.median(margins),
              "mean_chosen_reward": chosen.mean().item(), "mean_rejected_reward": rejected.mean().item()}
    if groups and any(groups):
        by: dict[str, list[float]] = {}
        for g, m in zip(groups, margins):
            by.setdefault(g or "-", []).append(m)
        report["accuracy_by_kind"] = {g: sum(m > 0 for m in ms) / len(ms) for g, ms in sorted(by.items())}
    return report


def train_reward(cfg: RewardConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Train a reward model on preference pairs (Bradley-Terry); writes out/model (a *ForSequenceClassification
    folder), metrics.jsonl, loss.png, and reports held-out pairwise accuracy.

    Args:
        cfg: the run (--config FILE.yaml, then overrides such as --model DIR --data a.jsonl --max_len 256)
        resume: continue from OUT/checkpoint exactly where it stopped
        overwrite: start afresh although OUT holds an earlier run's checkpoint (otherwise that is refused)
    """
    check_run_dir(cfg.out, resume, overwrite)
    text = reward_text(cfg.model, cfg.max_len)
    train, val, stats = split_pairs(cfg, text)
    objective = BradleyTerry(cfg.model, text, train, val, cfg.batch_size, cfg.center_rewards_coefficient)
    trainer = Trainer(objective, cfg, cfg.out, resume=resume, config_name="reward_config.json",
                      desc=f"train-reward ({text.kind})")
    result = trainer.run()
    scorer = RewardScorer(trainer.model, text.tokenizer, text.kind, text.max_len)
    held_out = pair_report(*pairwise(scorer, val), val)
    return {**result, "kind": text.kind, "max_len": text.max_len, **stats,
            **{f"val_{k}": v for k, v in held_out.items() if k != "pairs"},
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "peak_memory_mb": round(peak_memory_mb(trainer.device), 1), "out": str(cfg.out)}


def plot_margins(margins: list[float], path: Path, title: str) -> None:
    """A histogram of r_c - r_r (right of zero: ordered correctly), written atomically."""
    fig, ax = pyplot().subplots(figsize=(7, 4))
    ax.hist(margins, bins=min(50, max(10, len(margins) // 10)), color="tab:blue", alpha=0.8)
    ax.axvline(0.0, color="black", linewidth=1)
    correct = sum(m > 0 for m in margins) / len(margins)
    ax.set_xlabel("reward margin r(chosen) - r(rejected)")
    ax.set_ylabel("pairs")
    ax.set_title(f"{title} · accuracy {correct:.3f} · {len(margins)} pairs")
    ax.grid(alpha=0.3)
    save_png(fig, path)


def reward_eval(model: Path = Path("runs/reward/model"),
                data: list[Path] = [Path("runs/demo/corpus/preferences_test.jsonl")],  # noqa: B006
                format: PreferenceFormat = "auto", out: Path = Path("runs/reward_eval"), max_len: int | None = None,
                batch_size: int = 16, device: str = "auto") -> dict:
    """Pairwise accuracy of a reward model on preference files, its mean margin, and a margin histogram
    (OUT/margins.png); the figures are also written to OUT/report.json.

    Args:
        model: the reward model folder (what train-reward wrote to OUT/model, or a transformers one)
        data: preference files (.json / .jsonl, any of the preference formats)
        format: trl, sharegpt, hh-rlhf, openai, or auto per record
        out: the folder for report.json and margins.png
        max_len: tokens per prompt + answer; None: what the model was trained with
        batch_size: pairs scored at once
        device: auto (CUDA when present), cpu or cuda
    """
    scorer = RewardScorer.load(model, resolve_device(device), batch_size)
    if max_len is not None:
        scorer = RewardScorer(scorer.model, scorer.tokenizer, scorer.kind, max_len, batch_size)
    skipped: list[str] = []
    records = read_all(list(data), format, skipped)
    pairs, stats = scorer.text.encode(records, 0.0)
    kinds = {r.where: str(r.meta.get("kind") or "") for r in records}
    chosen, rejected = pairwise(scorer, pairs)
    report = {"model": str(model), "data": [str(p) for p in data], "kind": scorer.kind, "max_len": scorer.max_len,
              **pair_report(chosen, rejected, pairs, [kinds.get(p.where, "") for p in pairs]),
              "truncated": stats["truncated"], "dropped": stats["dropped"], "skipped": len(skipped)}
    out = Path(out)
    plot_margins((chosen - rejected).tolist(), out / "margins.png", f"{scorer.kind} reward model")
    write_json(out / "report.json", report)
    return {**report, "plot": str(out / "margins.png"), "report": str(out / "report.json")}
