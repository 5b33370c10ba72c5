"""The one training loop: every objective (pretraining, MLM, fine-tuning, the encoder tasks) runs through it.

One step (minimind / nanoGPT style): set the scheduled LR -> for each of ``grad_accum`` micro-batches: draw a
batch -> forward + the objective's loss under autocast -> backward -> clip -> AdamW step. Every
``eval_interval`` steps the objective's eval splits are estimated. With an output directory the trainer also
writes the config JSON, ``metrics.jsonl``, atomic checkpoints carrying every RNG (so ``resume`` continues to
exactly the losses of an uninterrupted run), the objective's artefact and ``loss.png``, and turns Ctrl-C /
SIGTERM into "checkpoint, then exit 130". Without one (an encoder task called from Python) it writes nothing.
Under torchrun (``parallel: ddp | fsdp``) the same loop runs on every rank through ``train.distributed``'s hooks
(device, wrapping, this rank's rows, gradient sync, the mean loss); rank 0 alone writes files, and checkpoints
are sharded (``train.sharded_checkpoint``).

Later features attach through ``Callback`` (``train.callback``, as transformers' ``TrainerCallback``):
on_before_optimizer_step (may veto the update: the spike guard, built from ``cfg.spike_guard``), on_step_end,
on_eval, on_checkpoint, on_restore, and state saved in every checkpoint. Tokens/s and MFU (``train.mfu``) are
logged with the loss.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from lmstack.config import to_dict
from lmstack.devices import resolve_device, use_bf16
from lmstack.errors import LmstackError
from lmstack.io import write_json
from lmstack.train.callback import Callback
from lmstack.train.checkpoint import TrainerState, load_checkpoint, save_checkpoint
from lmstack.train.config import LoopConfig
from lmstack.train.distributed import build_parallel
from lmstack.train.metrics import MetricsLog, plot_losses
from lmstack.train.mfu import utilisation
from lmstack.train.objective import Objective
from lmstack.train.optim import build_optimizer, lr_at
from lmstack.train.sharded_checkpoint import is_sharded, load_sharded, save_sharded
from lmstack.train.spike_guard import spike_guard_from

__all__ = ["Callback", "Trainer", "stop_on_signal"]
CALLBACK_STATE = "callbacks"  # the key of the callbacks' states in a checkpoint's data state


class Trainer:
    """Set up once (device, seed, model, optimizer, resume) for ``objective`` under ``cfg``; ``run`` trains.

    Args:
        objective: the task (``lmstack.train.objective.Objective``)
        cfg: the loop's settings (a ``LoopConfig`` or a command's config deriving from it)
        out: the run's directory (config JSON, metrics.jsonl, checkpoint/, the artefact, loss.png); None: no files
        model: a model the caller built; None: seed torch with ``cfg.seed`` and call ``objective.build``
        resume: continue from ``out/checkpoint`` exactly where it stopped
        callbacks: ``Callback`` instances, called in order
        config_name: the config JSON's file name in ``out``
        progress: show a tqdm bar (tokens/s, ETA) on stderr
        desc: the bar's label
    """

    def __init__(self, objective: Objective, cfg: LoopConfig, out: Path | None = None, *,
                 model: nn.Module | None = None, resume: bool = False, callbacks: Sequence[Callback] = (),
                 config_name: str = "train_config.json", progress: bool = True, desc: str = "train"):
        self.objective, self.cfg, self.out = objective, cfg, Path(out) if out is not None else None
        self.callbacks, self.config_name, self.progress, self.desc = list(callbacks), config_name, progress, desc
        self.callbacks += spike_guard_from(cfg)  # cfg.spike_guard: off | skip | rollback (train.spike_guard)
        self.parallel = build_parallel(cfg)  # cfg.parallel: none | ddp | fsdp (under torchrun)
        self.device = self.parallel.device(resolve_device(cfg.device))
        self.data_rng = torch.Generator().manual_seed(cfg.seed)
        self.resumed = resume
        self.make_optimizer = make_optimizer = lambda m: build_optimizer(m, cfg, self.device.type)  # noqa: E731
        if resume:
            if self.out is None:
                raise LmstackError("resume needs the run's output directory")
            torch.manual_seed(cfg.seed)
            if is_sharded(self.checkpoint_dir):  # a multi-process run's: DCP reshards it to this world size
                self.model = objective.build(self.device).to(self.device)
                forward = self.parallel.wrap(self.model)
                self.optimizer = make_optimizer(self.model)
                self.state, data_state = load_sharded(self.checkpoint_dir, self.parallel, self.model,
                                                      self.optimizer, self.data_rng)
            else:
                self.parallel.check_plain_resume(self.checkpoint_dir)
                self.model, self.optimizer, self.state, data_state = load_checkpoint(
                    self.checkpoint_dir, lambda folder: objective.restore(folder, self.device), make_optimizer,
                    self.data_rng)
                forward = self.parallel.wrap(self.model)
            data_state = dict(data_state)
            saved = data_state.pop(CALLBACK_STATE, {})
            for callback in self.callbacks:
                callback.load_state_dict(saved.get(type(callback).__name__, {}))
            objective.load_state_dict(data_state)
        else:
            if model is None:
                torch.manual_seed(cfg.seed)
                model = objective.build(self.device)
            self.model = model.to(self.device)
            forward = self.parallel.wrap(self.model)  # DDP / FSDP2 (sharded in place) / the model itself
            self.optimizer, self.state = make_optimizer(self.model), TrainerState(iter=0, tokens=0)
        self.forward = torch.compile(forward) if cfg.compile else forward
        bf16 = use_bf16(cfg.precision, self.device)
        self.autocast = lambda: torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16)
        self.utilisation = utilisation(self.model, getattr(objective, "block", None), self.device, bf16)  # MFU
        if resume:
            self._call("on_restore", self.checkpoint_dir)
        self.parallel.barrier()  # every rank has checked OUT (check_run_dir, before this) before rank 0 writes there

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def step(self, it: int) -> tuple[float, int, dict[str, Any]]:
        """One optimizer step over ``grad_accum`` micro-batches: the mean loss, the count read (tokens), and
        the mean of the objective's auxiliary figures (left as tensors: no extra device syncs)."""
        cfg, objective = self.cfg, self.objective
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(it, cfg)
        total, tokens, aux = 0.0, 0, {}
        for micro in range(cfg.grad_accum):
            batch = objective.batch("train", self.data_rng)
            tokens += objective.count(batch)  # the global batch's
            batch = self.parallel.rows(batch)  # this rank's rows of it
            self.parallel.sync_grads(last=micro == cfg.grad_accum - 1)  # all-reduce on the last micro-batch only
            with self.autocast():
                loss, metrics = objective.loss(self.forward, _to(batch, self.device))
                loss = loss / cfg.grad_accum
            loss.backward()
            total += loss.item()
            for k, v in metrics.items():
                aux[k] = aux.get(k, 0.0) + v / cfg.grad_accum
        total = self.parallel.mean(total)  # the loss over every rank's rows, for logging
        grad_norm = _grad_norm(self.model, cfg.grad_clip)  # before clipping
        if all([callback.on_before_optimizer_step(self, total, grad_norm) for callback in self.callbacks]):
            self.optimizer.step()  # a callback (the spike guard) may veto the update
        self.optimizer.zero_grad(set_to_none=True)
        aux["grad_norm"] = grad_norm
        return total, tokens, aux

    @torch.no_grad()
    def estimate(self, split: str) -> float:
        """Mean loss over ``eval_iters`` batches of ``split`` drawn with a fixed seed (training RNG untouched)."""
        self.model.eval()
        rng = torch.Generator().manual_seed(self.cfg.seed + 1)
        losses = []
        for _ in range(self.cfg.eval_iters):
            batch = self.objective.batch(split, rng)
            with self.autocast():
                losses.append(self.objective.loss(self.forward, _to(batch, self.device))[0].item())
        self.model.train()
        return sum(losses) / len(losses)

    def checkpoint(self) -> None:
        """Write ``out/checkpoint`` atomically (no-op without an output directory)."""
        if self.out is None:
            return
        if self.parallel.sharded:  # every rank writes its shards (train.sharded_checkpoint)
            save_sharded(self.checkpoint_dir, self.parallel, self.model, self.optimizer, self.state, self.data_rng,
                         self.cfg, self._data_state(), getattr(self.objective, "tokenizer", None))
        else:
            save_checkpoint(self.checkpoint_dir, lambda folder: self.objective.write_state(self.model, folder),
                            self.optimizer, self.state, self.data_rng, self.cfg, self._data_state())
        self._call("on_checkpoint", self.checkpoint_dir)

    def _data_state(self) -> dict:
        """The objective's data position, with the callbacks' states (the spike guard's windows) when any."""
        states = {type(c).__name__: state for c in self.callbacks if (state := c.state_dict())}
        return {**self.objective.state_dict(), **({CALLBACK_STATE: states} if states else {})}

    def run(self) -> dict:
        """Train to ``max_iters`` (or the time budget); returns iters, tokens, loss (the last step's),
        first_loss, loss_first / loss_last (means of the first / last tenth of the steps), {split}_loss of the
        last evaluation (and val_ppl), wall_s, and ``saved`` (the artefact's path) with an output directory."""
        metrics, main = None, self.parallel.is_main()  # rank 0 alone writes the run's files
        if self.out is not None and main:
            write_json(self.out / self.config_name, to_dict(self.cfg))
            metrics = MetricsLog(self.out / "metrics.jsonl", resume_iter=self.state.iter if self.resumed else None)
        signals = stop_on_signal() if self.out is not None else contextlib.nullcontext(lambda: False)
        with signals as stop, self.parallel.guard(lambda: f"at iteration {self.state.iter}"):
            result = self._loop(metrics, lambda: self.parallel.any(stop()))  # all ranks stop together
        for callback in self.callbacks:
            result.update(callback.summary(self))
        self.model.eval()
        if self.out is not None:
            model = self.parallel.full_model(self.model, lambda: self.objective.build(torch.device("cpu")))
            if main:
                saved = self.objective.save(model, self.out)
                plot_losses(metrics.read(), self.out / "loss.png", title=self.objective.title(model))
                result["saved"] = str(saved) if saved is not None else None
        return result

    def _loop(self, metrics: MetricsLog | None, stop) -> dict:
        cfg, state = self.cfg, self.state
        self.model.train()
        bar = tqdm(total=cfg.max_iters, initial=state.iter, file=sys.stderr, unit="it", mininterval=1.0,
                   dynamic_ncols=True, desc=self.desc, disable=not (self.progress and self.parallel.is_main()))
        t_start = t_window = time.perf_counter()
        tokens_window = tokens_start = state.tokens
        losses = []
        evaluated = dict.fromkeys(self.objective.eval_splits, math.nan)  # until an evaluation runs
        while state.iter < cfg.max_iters:
            loss, tokens, aux = self.step(state.iter)
            state.iter += 1
            state.tokens += tokens
            losses.append(loss)
            bar.update(1)
            self._call("on_step_end", loss, aux)
            if state.iter % cfg.log_interval == 0:
                now = time.perf_counter()
                tps = (state.tokens - tokens_window) / (now - t_window)
                t_window, tokens_window = now, state.tokens
                mfu = self._mfu(tps)
                if metrics is not None:
                    metrics.log({"iter": state.iter, "loss": loss, "lr": lr_at(state.iter - 1, cfg),
                                 "tokens": state.tokens, "tokens_per_s": tps, **{k: float(v) for k, v in aux.items()},
                                 **({"mfu": mfu} if mfu is not None else {})})
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}", **({"mfu": f"{mfu:.1%}"} if mfu else {}))
            out_of_time = cfg.max_seconds is not None and self.parallel.any(
                time.perf_counter() - t_start > cfg.max_seconds)
            last = state.iter == cfg.max_iters or out_of_time
            evaluate = self.objective.eval_splits and (state.iter % cfg.eval_interval == 0 or last)
            if evaluate:
                evaluated = self._evaluate(metrics, bar)
            if evaluate or state.iter % cfg.checkpoint_interval == 0 or last or stop():
                self.checkpoint()
            if stop():
                bar.close()
                raise LmstackError(f"interrupted at iteration {state.iter}; checkpoint saved in "
                                   f"{self.checkpoint_dir}; continue with --resume", exit_code=130)
            if out_of_time:
                bar.write(f"time budget of {cfg.max_seconds:g} s spent at iteration {state.iter}", file=sys.stderr)
                break
        bar.close()
        k = max(1, len(losses) // 10)
        result = {"iters": state.iter, "tokens": state.tokens, "loss": losses[-1] if losses else math.nan,
                  "first_loss": losses[0] if losses else math.nan,
                  "loss_first": sum(losses[:k]) / k if losses else math.nan,
                  "loss_last": sum(losses[-k:]) / k if losses else math.nan}
        result.update({f"{split}_loss": v for split, v in evaluated.items()})
        if "val" in evaluated:
            result["val_ppl"] = math.exp(evaluated["val"])
        wall = time.perf_counter() - t_start
        result["tokens_per_s"] = tps = (state.tokens - tokens_start) / wall  # this process's run, evaluations too
        if (mfu := self._mfu(tps)) is not None:
            result["mfu"] = mfu
        return {**result, "wall_s": wall}

    def _mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation of each device at ``tokens_per_s`` (counted over all ranks): train.mfu."""
        return self.utilisation.mfu(tokens_per_s / self.parallel.world_size)

    def _evaluate(self, metrics: MetricsLog | None, bar) -> dict[str, float]:
        state = self.state
        losses = {split: self.estimate(split) for split in self.objective.eval_splits}
        record = {f"{split}_loss": v for split, v in losses.items()}
        if "val" in losses:
            state.best_val_loss = min(losses["val"], state.best_val_loss or math.inf)
            record["val_ppl"] = math.exp(losses["val"])
        if metrics is not None:
            metrics.log({"iter": state.iter, **record})
        shown = ", ".join(f"{split} {v:.4f}" for split, v in losses.items())
        ppl = f" (ppl {record['val_ppl']:.2f})" if "val_ppl" in record else ""
        if self.parallel.is_main():
            bar.write(f"iter {state.iter}: {shown}{ppl}", file=sys.stderr)
        self._call("on_eval", losses)
        return losses

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)


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


def _grad_norm(model: nn.Module, clip: float) -> torch.Tensor:
    """The gradients' total L2 norm (before clipping), clipping them to ``clip`` when it is positive; a 0-d
    tensor on the device (no sync), the full norm under FSDP2."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if params else torch.zeros(())
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def _to(batch: Any, device: torch.device) -> Any:
    """Tensors, and tuples / dicts of them, on ``device``; anything else (a list of examples) as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, tuple):
        return tuple(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch
