"""``lmstack finetune``: supervised fine-tuning on conversations, fully or with a PEFT method.

    base model dir + conversations (alpaca / sharegpt / openai) -> chat template -> assistant-only labels
      -> method.apply(model) -> the one trainer (train.trainer.Trainer) -> out/model or out/adapter

One loop serves every method: the method changed the model when it was loaded, so the loop only sees
parameters that require gradients. Checkpoints hold just those parameters (the base stays on disk where it
was), the optimizer state and the RNGs, so ``--resume`` continues exactly (``adapt.objective``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lmstack.adapt.bottleneck import Adapter
from lmstack.adapt.lora import LoRA
from lmstack.adapt.methods import Full, count_parameters
from lmstack.adapt.objective import SupervisedFinetune
from lmstack.adapt.seq2seq import Seq2SeqFinetune
from lmstack.adapt.prefix import Prefix
from lmstack.adapt.prompt import Prompt
from lmstack.data.conversations import Format
from lmstack.io import read_json
from lmstack.model.registry import family_for_hf
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.checkpoint import check_run_dir, discard_checkpoint
from lmstack.train.config import LoopConfig
from lmstack.train.metrics import peak_memory_mb
from lmstack.train.trainer import Trainer

Method = Literal["full", "lora", "adapter", "prefix", "prompt"]
# The objective for a base model, by its family's task (Family.peft_task_type): chat / completion records on a
# decoder, input -> output pairs ({"input", "output"} or alpaca) on an encoder-decoder.
OBJECTIVES = {"CAUSAL_LM": SupervisedFinetune, "SEQ_2_SEQ_LM": Seq2SeqFinetune}


@dataclass
class PolicyConfig(LoopConfig):
    """What every command that tunes a base model with an adaptation method shares (``finetune``, ``dpo``, ...):
    the base model, the method and its settings, and the tokens per example."""
    model: Path = Path("runs/demo/train/model")  # the base model directory (Hugging Face format)
    method: Method = "lora"
    lora: LoRA = field(default_factory=LoRA)
    adapter: Adapter = field(default_factory=Adapter)
    prefix: Prefix = field(default_factory=Prefix)
    prompt: Prompt = field(default_factory=Prompt)
    max_len: int | None = None  # tokens per example; None: the model's context (less any virtual tokens)

    def method_config(self) -> Full | LoRA | Adapter | Prefix | Prompt:
        return Full() if self.method == "full" else getattr(self, self.method)


@dataclass
class FinetuneConfig(PolicyConfig):
    data: list[Path] = field(default_factory=lambda: [Path("runs/demo/corpus/sft_train.jsonl")])
    val_data: list[Path] = field(default_factory=list)  # empty: hold out val_fraction of data
    val_fraction: float = 0.05
    format: Format = "auto"  # alpaca, sharegpt, openai, completion (prompt + completion, no template), or auto
    out: Path = Path("runs/finetune")
    # the loop's defaults, for fine-tuning
    batch_size: int = 8
    max_iters: int = 300
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 20
    weight_decay: float = 0.0
    eval_interval: int = 100
    eval_iters: int = 10
    checkpoint_interval: int = 100


def finetune(cfg: FinetuneConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Fine-tune a model on conversations (an encoder-decoder: on input -> output pairs); writes out/model (full)
    or out/adapter, metrics and loss.png.

    Args:
        cfg: the run (--config FILE.yaml, then overrides such as --method lora --lora.r 4 --data a.json)
        resume: continue from OUT/checkpoint exactly where it stopped
        overwrite: start afresh although OUT holds an earlier run (otherwise that is refused)
    """
    check_run_dir(cfg.out, resume, overwrite)
    task = family_for_hf(read_json(cfg.model / "config.json"), str(cfg.model / "config.json")).peft_task_type
    objective = OBJECTIVES[task](cfg.model, cfg.method_config(), Tokenizer.load(cfg.model), cfg.data, cfg.val_data,
                                 cfg.batch_size, cfg.max_len, cfg.val_fraction, cfg.format, cfg.seed)
    trainer = Trainer(objective, cfg, cfg.out, resume=resume, config_name="finetune_config.json")  # reads the data
    if overwrite:
        discard_checkpoint(cfg.out)
    result = trainer.run()
    return {**result, **count_parameters(trainer.model), **objective.data_stats, "method": cfg.method,
            "peak_memory_mb": round(peak_memory_mb(trainer.device), 1), "out": str(cfg.out)}
