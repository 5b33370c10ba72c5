"""``lmstack finetune``: supervised fine-tuning on conversations, fully or with a PEFT method.

    base model dir + conversations (alpaca / sharegpt / openai) -> chat template -> assistant-only labels
      -> method.apply(model) -> the pretraining loop (train.loop.Run) -> out/model or out/adapter

One loop serves every method: the method changed the model when it was loaded, so the loop only sees
parameters that require gradients. Checkpoints hold just those parameters (the base stays on disk where it
was), the optimizer state and the RNGs, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file

from lmstack.adapt.bottleneck import Adapter
from lmstack.adapt.data import SFTBatches, encode_all
from lmstack.adapt.lora import LoRA
from lmstack.adapt.methods import Full, base_fingerprint, count_parameters, save_adapter
from lmstack.adapt.prefix import Prefix
from lmstack.adapt.prompt import Prompt
from lmstack.config import to_dict
from lmstack.data.conversations import Format, read_conversations
from lmstack.text.tokenizer import Tokenizer
from lmstack.devices import resolve_device
from lmstack.errors import LmstackError
from lmstack.io import write_json
from lmstack.model.hf import load_model, save_model, write_model_files
from lmstack.train.checkpoint import TrainerState, load_checkpoint, save_checkpoint
from lmstack.train.config import LoopConfig
from lmstack.train.loop import Run, stop_on_signal
from lmstack.train.metrics import MetricsLog, peak_memory_mb, plot_losses
from lmstack.train.optim import build_optimizer

Method = Literal["full", "lora", "adapter", "prefix", "prompt"]


@dataclass
class FinetuneConfig(LoopConfig):
    model: Path = Path("runs/demo/train/model")  # the base model directory (Hugging Face format)
    data: list[Path] = field(default_factory=lambda: [Path("runs/demo/corpus/sft_train.jsonl")])
    val_data: list[Path] = field(default_factory=list)  # empty: hold out val_fraction of data
    val_fraction: float = 0.05
    format: Format = "auto"  # alpaca, sharegpt, openai, or auto per record
    out: Path = Path("runs/finetune")
    method: Method = "lora"
    lora: LoRA = field(default_factory=LoRA)
    adapter: Adapter = field(default_factory=Adapter)
    prefix: Prefix = field(default_factory=Prefix)
    prompt: Prompt = field(default_factory=Prompt)
    max_len: int | None = None  # tokens per example; None: the model's context (less any virtual tokens)
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

    def method_config(self) -> Full | LoRA | Adapter | Prefix | Prompt:
        return Full() if self.method == "full" else getattr(self, self.method)


def finetune(cfg: FinetuneConfig, resume: bool = False) -> dict:
    """Fine-tune a model on conversations; writes out/model (full) or out/adapter, metrics and loss.png.

    Args:
        cfg: the run (--config FILE.yaml, then overrides such as --method lora --lora.r 4 --data a.json)
        resume: continue from OUT/checkpoint exactly where it stopped
    """
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    tokenizer = Tokenizer.load(cfg.model)
    if tokenizer.pad_id is None and tokenizer.eos_id is None:
        raise LmstackError(f"{cfg.model}: the tokenizer has neither a pad nor an eos token to pad batches with")
    method = cfg.method_config()
    model = method.apply(load_model(cfg.model, device=device), tokenizer)
    block = cfg.max_len or model.config.block_size
    if block > model.config.block_size:
        raise LmstackError(f"max_len {block} exceeds the model's context of {model.config.block_size} tokens")
    train_data, val_data, data_stats = _datasets(cfg, tokenizer, block)
    params = count_parameters(model)
    data_rng = torch.Generator().manual_seed(cfg.seed)
    ckpt, peft = cfg.out / "checkpoint", cfg.method != "full"

    def write_weights(folder: Path) -> None:
        if peft:
            save_file({n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                      str(folder / "trainable.safetensors"))
        else:
            write_model_files(model, folder, tokenizer)

    def load_weights(folder: Path):
        if not peft:
            return method.apply(load_model(folder, device=device), tokenizer)
        model.load_state_dict(load_file(str(folder / "trainable.safetensors"), device=str(device)), strict=False)
        return model

    make_optimizer = lambda m: build_optimizer(m, cfg, device.type)  # noqa: E731
    if resume:
        model, optimizer, state = load_checkpoint(ckpt, load_weights, make_optimizer, data_rng)
    else:
        optimizer, state = make_optimizer(model), TrainerState(iter=0, tokens=0)
    write_json(cfg.out / "finetune_config.json", to_dict(cfg))
    metrics = MetricsLog(cfg.out / "metrics.jsonl", resume_iter=state.iter if resume else None)
    run = Run(model, optimizer, cfg, train_data, val_data, data_rng, device, block)
    with stop_on_signal() as stop:
        result = run.loop(state, metrics, lambda: save_checkpoint(ckpt, write_weights, optimizer, state, data_rng,
                                                                  cfg), stop)
    if peft:
        saved = save_adapter(method, model, cfg.out / "adapter", base_fingerprint(model), str(cfg.model), tokenizer)
    else:
        saved = save_model(model, cfg.out / "model", tokenizer)
    plot_losses(metrics.read(), cfg.out / "loss.png", title=f"{cfg.method} fine-tuning · "
                f"{params['trainable_params']:,} of {params['total_params']:,} parameters trained")
    return {**result, **params, **data_stats, "method": cfg.method, "peak_memory_mb": round(peak_memory_mb(device), 1),
            "out": str(cfg.out), "saved": str(saved)}


def _datasets(cfg: FinetuneConfig, tokenizer: Tokenizer, block: int) -> tuple[SFTBatches, SFTBatches, dict]:
    """Encode the training (and validation) conversations; without ``val_data``, a seeded ``val_fraction``
    of the training conversations (at least one) is held out."""
    conversations = [c for path in cfg.data for c in read_conversations(path, cfg.format)]
    if cfg.val_data:
        val = [c for path in cfg.val_data for c in read_conversations(path, cfg.format)]
    else:
        random.Random(cfg.seed).shuffle(conversations)
        n_val = max(1, round(cfg.val_fraction * len(conversations)))
        if n_val >= len(conversations):
            raise LmstackError(f"{len(conversations)} conversation(s) cannot be split into train and validation; "
                               "give more data or --val_data")
        conversations, val = conversations[n_val:], conversations[:n_val]
    train_ex, train_stats = encode_all(tokenizer, conversations, block)
    val_ex, _ = encode_all(tokenizer, val, block)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id
    return SFTBatches(train_ex, pad), SFTBatches(val_ex, pad), {"val_examples": len(val_ex), **train_stats}
