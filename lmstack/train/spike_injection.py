"""Spikes to inject into a run, to check that a loss-spike guard (``train.spike_guard``) recovers from them: the
bench (``bench/spike_guard.py``) and the tests inject the same two.

- ``LrSpike``: a callback multiplying the learning rate of chosen steps just before their update (updates that
  wreck the weights: PaLM's spikes; the guard's answer is a rollback).
- ``PoisonedLM``: next-token CE whose training batch number ``at`` has its loss, and so its gradient, x ``scale``
  (a corrupted batch or loss scale; the guard's answer is skipping the step).
"""

from __future__ import annotations

from collections.abc import Iterable

from lmstack.train.callback import Callback
from lmstack.train.objectives.causal import CausalLM


class LrSpike(Callback):
    """Multiplies the learning rate of steps ``iters`` (0-based) by ``factor`` just before their update."""

    def __init__(self, iters: Iterable[int], factor: float = 100.0):
        self.iters, self.factor = set(iters), factor

    def on_before_optimizer_step(self, trainer, loss, grad_norm) -> bool:
        if trainer.state.iter in self.iters:
            for group in trainer.optimizer.param_groups:
                group["lr"] *= self.factor
        return True


class PoisonedLM(CausalLM):
    """``CausalLM`` whose training batch number ``at`` (0-based; None: none) has its loss x ``scale``."""

    def __init__(self, *args, at: int | None = None, scale: float = 1000.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.scale, self.calls = at, scale, 0

    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        if model.training:
            self.calls += 1
            if self.calls - 1 == self.at:
                loss = loss * self.scale
        return loss, metrics
