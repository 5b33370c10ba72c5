"""The loss-spike guard: a trainer ``Callback`` that refuses updates whose loss or gradient norm jumps.

The rule (OLMo-core's ``SkipStepOptimizer``, Groeneveld et al. / OLMo 2, 2025): once the rolling window holds at
least ``min_history`` values, a step whose loss x or pre-clip gradient norm g satisfies

    x - mean(window_x) > k * std(window_x)     or     g - mean(window_g) > k * std(window_g)

(k = ``spike_sigma``, 6; window = the previous ``spike_window`` steps, 128; history 64) is a spike. Every finite
value enters the window, spikes included (as OLMo-core: a lasting shift of the loss level is accepted after a
while instead of freezing the run); a non-finite loss or norm is always a spike and stays out of the window.

Policies (``LoopConfig.spike_guard``):
  skip      the update is not applied (gradients zeroed); the iteration still counts and its batches stay consumed.
  rollback  PaLM's recipe (Chowdhery et al. 2022, section 5.1): restore the last good checkpoint (model, optimizer,
            torch RNGs, through ``train.checkpoint.load_checkpoint``), keep the data position where it is (past the
            batches seen before and during the spike) and draw and discard the next ``rollback_skip`` steps'
            batches. The iteration counter and the LR schedule go on (the steps since the checkpoint are spent).
            Before the first checkpoint exists it falls back to skip.

Events (iteration, loss, grad norm, thresholds, action) go to ``metrics.jsonl`` as ``{"iter", "spike": {...}}``
records, to stderr, and to the run's result (``spike_events``, ``spike_skipped``, ``spike_rollbacks``). The
windows and events are checkpointed (``state_dict``) so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from lmstack.errors import LmstackError
from lmstack.train.callback import Callback
from lmstack.train.checkpoint import load_checkpoint

if TYPE_CHECKING:
    from lmstack.train.config import LoopConfig
    from lmstack.train.trainer import Trainer

POLICIES = ("off", "skip", "rollback")


class RollingStats:
    """The last ``size`` values of a series; ``threshold(k)``: their mean plus k sample standard deviations
    (Bessel-corrected, as OLMo-core's torch.std_mean), above which a value is a spike."""

    def __init__(self, size: int):
        self.values: deque[float] = deque(maxlen=size)

    def threshold(self, k: float) -> float:
        n = len(self.values)
        mean = sum(self.values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in self.values) / max(1, n - 1))
        return mean + k * std


class SpikeGuard(Callback):
    """Skip (or roll back) the steps whose loss or gradient norm spikes; see the module docstring.

    Args:
        policy: "skip" or "rollback"
        sigma: k, the number of standard deviations above the window's mean that makes a spike
        window: how many previous steps the mean and deviation are taken over
        min_history: steps of history before the guard acts
        rollback_skip: steps' worth of batches drawn and discarded after a rollback
    """

    def __init__(self, policy: str = "skip", sigma: float = 6.0, window: int = 128, min_history: int = 64,
                 rollback_skip: int = 0):
        if policy not in ("skip", "rollback"):
            raise LmstackError(f"spike_guard: '{policy}' is not a policy; choose one of {', '.join(POLICIES)}")
        self.policy, self.sigma, self.min_history, self.rollback_skip = policy, sigma, min_history, rollback_skip
        self.losses, self.norms = RollingStats(window), RollingStats(window)
        self.events: list[dict[str, Any]] = []

    def on_before_optimizer_step(self, trainer: Trainer, loss: float, grad_norm: torch.Tensor) -> bool:
        norm = float(grad_norm)
        it = trainer.state.iter + 1  # this step's number, as metrics.jsonl counts steps
        finite = math.isfinite(loss) and math.isfinite(norm)
        event = None
        if not finite:
            event = {"iter": it, "loss": loss, "grad_norm": norm, "reason": "non-finite"}
        elif len(self.losses.values) >= self.min_history:
            loss_limit, norm_limit = self.losses.threshold(self.sigma), self.norms.threshold(self.sigma)
            if loss > loss_limit or norm > norm_limit:
                event = {"iter": it, "loss": loss, "grad_norm": norm, "loss_threshold": loss_limit,
                         "grad_norm_threshold": norm_limit, "reason": "loss" if loss > loss_limit else "grad_norm"}
        if finite:
            self.losses.values.append(loss)
            self.norms.values.append(norm)
        if event is None:
            return True
        event["action"] = self._rollback(trainer) if self.policy == "rollback" else "skip"
        self.events.append(event)
        _log_event(trainer, event)
        return False

    def _rollback(self, trainer: Trainer) -> str:
        """Load the checkpoint's model, optimizer and RNGs into the running ones (in place: the compiled forward
        and the optimizer's parameter references stay valid); the data position is kept, then advanced."""
        if trainer.parallel.sharded:
            return "skip (rollback restores single-process checkpoints only)"
        if trainer.out is None or not (trainer.checkpoint_dir / "trainer_state.pt").is_file():
            return "skip (no checkpoint yet)"
        path = trainer.checkpoint_dir
        model, optimizer, state, _ = load_checkpoint(
            path, lambda folder: trainer.objective.restore(folder, trainer.device), trainer.make_optimizer,
            torch.Generator())  # a scratch generator: the data stream is not rewound
        trainer.model.load_state_dict(model.state_dict())
        trainer.optimizer.load_state_dict(optimizer.state_dict())
        del model, optimizer
        for _ in range(self.rollback_skip * trainer.cfg.grad_accum):
            trainer.objective.batch("train", trainer.data_rng)
        return f"rollback to iter {state.iter}, {self.rollback_skip} steps of batches skipped"

    def state_dict(self) -> dict:
        return {"losses": list(self.losses.values), "norms": list(self.norms.values),
                "events": json.dumps(self.events)}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.losses.values.extend(state["losses"])
        self.norms.values.extend(state["norms"])
        self.events = json.loads(state["events"])

    def summary(self, trainer: Trainer) -> dict[str, Any]:
        rollbacks = sum(e["action"].startswith("rollback") for e in self.events)
        at = f" at iterations {', '.join(str(e['iter']) for e in self.events)}" if self.events else ""
        if trainer.parallel.is_main():
            print(f"spike guard ({self.policy}): {len(self.events)} spikes{at}; {len(self.events) - rollbacks} "
                  f"skipped, {rollbacks} rolled back", file=sys.stderr, flush=True)
        return {"spike_events": list(self.events), "spike_skipped": len(self.events) - rollbacks,
                "spike_rollbacks": rollbacks}


def spike_guard_from(cfg: LoopConfig) -> list[Callback]:
    """The guard ``cfg`` asks for (``spike_guard``: off | skip | rollback), as a list of callbacks to add."""
    if cfg.spike_guard == "off":
        return []
    return [SpikeGuard(cfg.spike_guard, cfg.spike_sigma, cfg.spike_window, cfg.spike_min_history,
                       cfg.rollback_skip)]


def _log_event(trainer: Trainer, event: dict[str, Any]) -> None:
    """One ``{"iter": n, "spike": event}`` line in metrics.jsonl (n: the step's number, as the loss records count
    steps) and a line on stderr, from the main process (every rank decides alike: the loss and norm are global)."""
    if not trainer.parallel.is_main():
        return
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in event.items() if k != "iter")
    tqdm.write(f"spike at iteration {event['iter']}: {shown}", file=sys.stderr)  # above the progress bar
    if trainer.out is not None:
        with open(trainer.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"iter": event["iter"], "spike": event}) + "\n")
