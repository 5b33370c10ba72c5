"""``lmstack train``: pretrain a Transformer by next-token prediction on shards from ``lmstack prepare``.

The loop (minimind-style, one readable file): sample a batch -> forward under autocast -> cross-entropy ->
backward (accumulated over ``grad_accum`` micro-batches) -> clip -> AdamW step with the scheduled LR.
Every ``eval_interval`` steps the train/val loss is estimated; checkpoints are atomic and carry every RNG, so
``--resume`` continues to exactly the losses an uninterrupted run would have reached.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lmstack.config import to_dict
from lmstack.data.shards import TokenShards
from lmstack.text.tokenizer import Tokenizer
from lmstack.devices import bf16_is_native, resolve_device
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, write_json
from lmstack.model.config import ModelConfig
from lmstack.model.hf import load_model, write_model_files
from lmstack.model.families import build_model
from lmstack.model.families.bert import load_encoder
from lmstack.model.transformer import Transformer
from lmstack.train.checkpoint import TrainerState, load_checkpoint, save_checkpoint
from lmstack.train.config import LoopConfig, TrainConfig
from lmstack.train.metrics import MetricsLog, plot_losses
from lmstack.train.mlm import MaskedBatches, build_mlm_model
from lmstack.train.optim import build_optimizer, lr_at


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the next token; targets of -100 (masked prompt tokens) are ignored."""
    return F.cross_entropy(logits.float().flatten(0, -2), targets.reshape(-1), ignore_index=-100)


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Pretrain a Transformer on token shards; writes checkpoints, metrics.jsonl, loss.png and model/.

    Args:
        cfg: the run's configuration (--config FILE.yaml, then --key value overrides, e.g. --model.n_layer 6)
        resume: continue from OUT/checkpoint exactly where it stopped
    """
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    tokenizer = Tokenizer.load(cfg.data)
    objective = OBJECTIVES[cfg.objective]
    train_data, val_data = (objective.batches(TokenShards(cfg.data, split), tokenizer) for split in ("train", "val"))
    data_rng = torch.Generator().manual_seed(cfg.seed)
    model_cfg = cfg.model.replace(vocab_size=tokenizer.vocab_size)
    ckpt = cfg.out / "checkpoint"

    def make_optimizer(m: Transformer) -> torch.optim.Optimizer:
        return build_optimizer(m, cfg, device.type)

    if resume:
        model, optimizer, state = load_checkpoint(ckpt, lambda p: objective.load(p, str(device)), make_optimizer,
                                                  data_rng)
        if model.config != model_cfg:
            raise LmstackError(f"{ckpt}: checkpoint model {_diff(model.config, model_cfg)}; resume with its config")
    else:
        model = objective.build(model_cfg).to(device)
        optimizer, state = make_optimizer(model), TrainerState(iter=0, tokens=0)
    write_json(cfg.out / "train_config.json", to_dict(cfg))
    metrics = MetricsLog(cfg.out / "metrics.jsonl", resume_iter=state.iter if resume else None)
    run = Run(model, optimizer, cfg, train_data, val_data, data_rng, device, model_cfg.block_size)
    write = lambda folder: objective.write(model, folder, tokenizer)  # noqa: E731
    with stop_on_signal() as stop:
        result = run.loop(state, metrics, lambda: save_checkpoint(ckpt, write, optimizer, state, data_rng, cfg), stop)
    with atomic_dir(cfg.out / "model") as folder:
        write(folder)
    plot_losses(metrics.read(), cfg.out / "loss.png", title=f"{model_cfg.family} · {model.num_params():,} params")
    return {**result, "out": str(cfg.out), "model": str(cfg.out / "model"), "params": model.num_params()}


@dataclass(frozen=True)
class Objective:
    """What a pretraining objective decides: the model it builds, how it reads the token shards, how the
    model is written to (and read back from) a directory."""
    build: Callable[[ModelConfig], nn.Module]
    batches: Callable[[TokenShards, Tokenizer], Batches]
    write: Callable[[nn.Module, Path, Tokenizer], None]
    load: Callable[[Path, str], nn.Module]


OBJECTIVES = {
    # next-token prediction with a decoder (Radford et al. 2018)
    "causal": Objective(build_model, lambda shards, _: shards, write_model_files,
                        lambda path, device: load_model(path, device=device)),
    # masked-language modelling with a bidirectional encoder (Devlin et al. 2019): loss on the masked tokens
    "mlm": Objective(build_mlm_model, MaskedBatches, write_model_files,
                     lambda path, device: load_encoder(path, head="mlm", device=device)[0]),
}


class Batches(Protocol):
    """A source of training examples: ``TokenShards`` (pretraining) or ``adapt.data.SFTBatches`` (fine-tuning)."""

    def batch(self, batch_size: int, block: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [B, T] and next-token targets [B, T] (-100 where no loss is taken)."""


class Run:
    """The state one training loop needs, so each step reads as the math. Every objective (pretraining,
    fine-tuning with any adaptation method) runs through this one loop."""

    def __init__(self, model, optimizer, cfg: LoopConfig, train_data: Batches, val_data: Batches,
                 data_rng: torch.Generator, device: torch.device, block: int):
        self.model, self.optimizer, self.cfg = model, optimizer, cfg
        self.train_data, self.val_data, self.data_rng, self.device = train_data, val_data, data_rng, device
        self.block = block  # the longest sequence a batch may hold
        self.forward = torch.compile(model) if cfg.compile else model
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_is_native(device))
        self.autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(self, it: int) -> tuple[float, int]:
        """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss and the tokens read."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(it, self.cfg)
        total, tokens = 0.0, 0
        for _ in range(self.cfg.grad_accum):
            x, y = self.train_data.batch(self.cfg.batch_size, self.block, self.data_rng)
            with self.autocast():
                loss = causal_lm_loss(self.forward(x.to(self.device)), y.to(self.device)) / self.cfg.grad_accum
            loss.backward()
            total += loss.item()
            tokens += x.numel()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, tokens

    @torch.no_grad()
    def estimate(self, data: Batches) -> float:
        """Mean loss over ``eval_iters`` batches drawn with a fixed seed (the training RNG is untouched)."""
        self.model.eval()
        rng = torch.Generator().manual_seed(self.cfg.seed + 1)
        losses = []
        for _ in range(self.cfg.eval_iters):
            x, y = data.batch(self.cfg.batch_size, self.block, rng)
            with self.autocast():
                losses.append(causal_lm_loss(self.forward(x.to(self.device)), y.to(self.device)).item())
        self.model.train()
        return sum(losses) / len(losses)

    def loop(self, state: TrainerState, metrics: MetricsLog, checkpoint, stop) -> dict:
        cfg = self.cfg
        self.model.train()
        bar = tqdm(total=cfg.max_iters, initial=state.iter, file=sys.stderr, unit="it", mininterval=1.0,
                   dynamic_ncols=True, desc="train")
        t_start, t_window, tokens_window = time.perf_counter(), time.perf_counter(), state.tokens
        val_loss = train_loss = loss = math.nan
        while state.iter < cfg.max_iters:
            loss, tokens = self.step(state.iter)
            state.iter += 1
            state.tokens += tokens
            bar.update(1)
            if state.iter % cfg.log_interval == 0:
                now = time.perf_counter()
                tps = (state.tokens - tokens_window) / (now - t_window)
                t_window, tokens_window = now, state.tokens
                metrics.log({"iter": state.iter, "loss": loss, "lr": lr_at(state.iter - 1, cfg), "tokens": state.tokens,
                             "tokens_per_s": tps})
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
            evaluate = state.iter % cfg.eval_interval == 0 or state.iter == cfg.max_iters
            if evaluate:
                train_loss, val_loss = self.estimate(self.train_data), self.estimate(self.val_data)
                state.best_val_loss = min(val_loss, state.best_val_loss or math.inf)
                metrics.log({"iter": state.iter, "train_loss": train_loss, "val_loss": val_loss,
                             "val_ppl": math.exp(val_loss)})
                bar.write(f"iter {state.iter}: train {train_loss:.4f}, val {val_loss:.4f} "
                          f"(ppl {math.exp(val_loss):.2f})", file=sys.stderr)
            if evaluate or state.iter % cfg.checkpoint_interval == 0 or stop():
                checkpoint()
            if stop():
                bar.close()
                raise LmstackError(f"interrupted at iteration {state.iter}; checkpoint saved in "
                                   f"{cfg.out / 'checkpoint'}; continue with --resume", exit_code=130)
        bar.close()
        wall = time.perf_counter() - t_start
        return {"iters": state.iter, "tokens": state.tokens, "loss": loss, "train_loss": train_loss,
                "val_loss": val_loss, "val_ppl": math.exp(val_loss) if not math.isnan(val_loss) else math.nan,
                "wall_s": wall}


@contextlib.contextmanager
def stop_on_signal():
    """Ctrl-C / SIGTERM ask the loop to stop after the current step (and checkpoint) instead of dying mid-write."""
    requested = []
    handler = lambda *_: requested.append(True)  # noqa: E731
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _diff(a, b) -> str:
    for k, v in a.__dict__.items():
        if b.__dict__[k] != v:
            return f"has {k}={v}, but the config asks for {k}={b.__dict__[k]}"
    return "differs"
