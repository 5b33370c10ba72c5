"""Epoch-style objectives on the one Trainer equal the plain loop the encoder tasks were measured with (the
former train.epochs.fit), bit for bit: seeded shuffled epochs, AdamW (wd 0.01 on every parameter), clipping at 1,
constant or linear warmup/decay; the time budget stops after the step that spent it."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from lmstack.train.objectives.epochs import EpochObjective, train_epochs

X, Y = torch.randn(37, 5, generator=torch.Generator().manual_seed(0)), torch.arange(37) % 3


class Classify(EpochObjective):
    def __init__(self, model: nn.Module, batch_size: int, seed: int):
        super().__init__(list(range(len(X))), batch_size, seed)
        self.model = model

    def loss(self, module, batch):
        return nn.functional.cross_entropy(self.model(X[batch]), Y[batch]), {}


def reference(model: nn.Module, epochs: int, batch_size: int, lr: float, seed: int, warmup: float | None):
    """The loop the encoder tasks used before the Trainer (train.epochs.fit), written out."""
    steps = epochs * math.ceil(len(X) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    ramp = max(1, (warmup or 0) * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 if warmup is None else min((t + 1) / ramp,
                                                                                           (steps - t) / steps))
    rng, losses = torch.Generator().manual_seed(seed), []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=rng).tolist()
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(X[batch]), Y[batch])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
    return losses


@pytest.mark.parametrize("warmup", [None, 0.2])
def test_same_as_the_plain_epoch_loop(warmup):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.LayerNorm(16), nn.Dropout(0.1), nn.Linear(16, 3))
    ours, theirs = copy.deepcopy(net), copy.deepcopy(net)
    torch.manual_seed(1)
    run = train_epochs(Classify(ours, 8, seed=3), ours, epochs=3, lr=1e-2, seed=3, warmup=warmup)
    torch.manual_seed(1)  # the same dropout masks
    losses = reference(theirs, 3, 8, 1e-2, 3, warmup)
    assert run["steps"] == len(losses) == 15
    assert (run["first_loss"], run["last_loss"]) == (losses[0], losses[-1])
    assert run["loss_first"] == losses[0] and run["loss_last"] == losses[-1]  # a tenth of 15 steps is one
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    assert not ours.training and run["seconds"] > 0


def test_time_budget_stops_after_the_step_that_spent_it():
    net = nn.Linear(5, 3)
    run = train_epochs(Classify(net, 4, seed=0), net, epochs=50, lr=1e-2, seed=0, max_seconds=1e-9)
    assert run["steps"] == 1
