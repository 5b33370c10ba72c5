"""``lmstack dpo``: align a (fine-tuned) model on preference pairs without a reward model or rollouts.

    SFT model dir + preference files (trl / sharegpt / hh-rlhf / openai; unpaired for kto) -> chat template ->
      reference log-probs of every pair, once (cached: out/reference_logps.safetensors) -> method.apply(model) ->
      the one trainer with PreferenceObjective(loss_type) -> out/adapter (peft layout) or out/model

One command for the family: ``--loss_type`` sigmoid (DPO; with ``--label_smoothing``: cDPO), robust, ipo, hinge,
simpo, orpo (both without a reference) or kto. Checkpoints and ``--resume`` are the trainer's; the reference cache
is reused on resume and refused when the data or the model changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lmstack.adapt.finetune import PolicyConfig
from lmstack.adapt.methods import count_parameters
from lmstack.align.dpo import PreferenceObjective
from lmstack.align.losses import LossParams
from lmstack.data.preferences import PreferenceFormat, read_preferences, read_unpaired
from lmstack.data.splits import hold_out
from lmstack.errors import LmstackError
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.metrics import peak_memory_mb
from lmstack.train.checkpoint import check_run_dir
from lmstack.train.trainer import Trainer

LossType = Literal["sigmoid", "robust", "ipo", "hinge", "simpo", "orpo", "kto"]


@dataclass
class DPOConfig(PolicyConfig):
    model: Path = Path("runs/demo/sft/model")  # the model to align (Hugging Face format): an SFT model, merged
    data: list[Path] = field(default_factory=lambda: [Path("runs/demo/corpus/preferences_train.jsonl")])
    val_data: list[Path] = field(default_factory=list)  # empty: hold out val_fraction of data
    val_fraction: float = 0.1
    format: PreferenceFormat = "auto"  # trl, sharegpt, hh-rlhf, openai, or auto per record (kto: unpaired files too)
    out: Path = Path("runs/dpo")
    loss_type: LossType = "sigmoid"
    beta: float = 0.1  # KL strength (IPO's tau; SimPO's reward scale: 2-10)
    label_smoothing: float = 0.0  # cDPO / robust DPO: the probability a label is flipped
    simpo_gamma: float = 0.5  # SimPO's target reward margin
    orpo_lambda: float = 0.1  # ORPO's weight of the odds-ratio term
    kto_desirable_weight: float = 1.0
    kto_undesirable_weight: float = 1.0
    rpo_alpha: float = 0.0  # + alpha * the chosen answers' per-token NLL (RPO, Pang et al. 2024); 0: off
    ref_cache: Path | None = None  # reference log-probs; None: OUT/reference_logps.safetensors
    ref_batch_size: int = 16  # rows per forward when computing the reference log-probs
    skip_long: bool = False  # drop (and count) records whose prompt leaves no room for an answer; False: an error
    # the loop's defaults, for preference tuning
    batch_size: int = 8
    max_iters: int = 200
    lr: float = 5e-4
    min_lr: float = 5e-5
    warmup_iters: int = 10
    weight_decay: float = 0.0
    eval_interval: int = 50
    eval_iters: int = 5
    checkpoint_interval: int = 50

    def loss_params(self) -> LossParams:
        return LossParams(self.beta, self.label_smoothing, self.simpo_gamma, self.orpo_lambda,
                          self.kto_desirable_weight, self.kto_undesirable_weight, self.rpo_alpha)


def read_splits(cfg: DPOConfig) -> dict[str, list]:
    """The train and val records (pairs, or unpaired answers for kto); without val files a seeded val_fraction
    of the records (at least one) is held out (a pair's two halves stay together)."""
    read = (lambda p: read_unpaired(p)) if cfg.loss_type == "kto" else (lambda p: read_preferences(p, cfg.format))
    if not cfg.data:
        raise LmstackError("no data: give --data FILE (preference pairs)")
    train = [r for path in cfg.data for r in read(path)]
    if cfg.val_data:
        return {"train": train, "val": [r for path in cfg.val_data for r in read(path)]}
    groups: dict[str, list] = {}
    for r in train:
        groups.setdefault(r.where, []).append(r)  # the two halves of a pair read as unpaired share their line
    train_keys, val_keys = hold_out(list(groups), cfg.val_fraction, cfg.seed)
    flat = lambda ks: [r for k in ks for r in groups[k]]  # noqa: E731
    return {"train": flat(train_keys), "val": flat(val_keys)}


def dpo(cfg: DPOConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Align a model on preferences with a DPO-family loss; writes out/adapter (or out/model), the reference cache,
    metrics and loss.png; returns the final train/val loss, held-out accuracy and margins, and peak memory.

    Args:
        cfg: the run (--config FILE.yaml, then overrides such as --loss_type ipo --beta 0.5 --method lora)
        resume: continue from OUT/checkpoint exactly where it stopped (the reference cache is reused)
        overwrite: start afresh although OUT holds an earlier run's checkpoint (otherwise that is refused)
    """
    check_run_dir(cfg.out, resume, overwrite)
    records = read_splits(cfg)
    source = ", ".join(map(str, cfg.data)) + (f" | val: {', '.join(map(str, cfg.val_data))}" if cfg.val_data
                                              else f" (val_fraction {cfg.val_fraction}, seed {cfg.seed})")
    objective = PreferenceObjective(cfg.model, cfg.method_config(), Tokenizer.load(cfg.model), records, cfg.loss_type,
                                    cfg.loss_params(), cfg.batch_size, cfg.max_len,
                                    cfg.ref_cache or cfg.out / "reference_logps.safetensors", cfg.precision,
                                    cfg.ref_batch_size, source, cfg.skip_long)
    trainer = Trainer(objective, cfg, cfg.out, resume=resume, config_name="dpo_config.json", desc=cfg.loss_type)
    result = trainer.run()
    held_out = objective.evaluate(trainer.model, "val")
    return {**result, **{k: round(v, 4) for k, v in held_out.items()}, **count_parameters(trainer.model),
            **objective.data_stats, "loss_type": cfg.loss_type, "method": cfg.method,
            "peak_memory_mb": round(peak_memory_mb(trainer.device), 1), "out": str(cfg.out)}
