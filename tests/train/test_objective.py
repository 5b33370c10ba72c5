"""The one Trainer with objectives: a new objective is one small class (label smoothing), hooks fire, aux figures
are logged, an epoch-style objective resumes exactly, the schedules are the formulas, no output dir = no files."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmstack.data.shards import TokenShards
from lmstack.model.config import ModelConfig
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.batching import EpochBatches
from lmstack.train.config import LoopConfig
from lmstack.train.objective import Objective
from lmstack.train.objectives.causal import IGNORE, CausalLM
from lmstack.train.optim import lr_at
from lmstack.train.trainer import Callback, Trainer

MODEL = ModelConfig(family="llama", n_layer=2, n_head=2, n_kv_head=1, n_embd=32, block_size=32, bias=False,
                    activation="silu")


class LabelSmoothedLM(CausalLM):
    """Label-smoothed next-token cross-entropy (Szegedy et al. 2016, section 7): with
    q = (1 - eps) onehot(y) + eps / V, the loss per labelled position is
        H(q, p) = (1 - eps) (-log p_y) + eps * mean_k(-log p_k),
    averaged over the positions whose target is not -100; the plain NLL is logged beside it."""
    eps = 0.1

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, y = batch
        logp = model(x).float().log_softmax(-1).flatten(0, -2)
        y = y.reshape(-1)
        keep = y != IGNORE
        nll = -logp[keep].gather(1, y[keep, None]).squeeze(1)
        uniform = -logp[keep].mean(-1)
        return ((1 - self.eps) * nll + self.eps * uniform).mean(), {"nll": nll.detach().mean()}


def _smoothed(data) -> LabelSmoothedLM:
    tok = Tokenizer.load(data)
    return LabelSmoothedLM(TokenShards(data, "train"), TokenShards(data, "val"), 8, 32,
                           MODEL.replace(vocab_size=tok.vocab_size), tok)


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_label_smoothing_is_one_file_trains_and_logs_its_aux_metric(data, tmp_path):
    objective = _smoothed(data)
    cfg = LoopConfig(max_iters=60, batch_size=8, lr=1e-2, warmup_iters=5, eval_interval=30, eval_iters=4,
                     log_interval=1, checkpoint_interval=30, device="cpu")
    result = Trainer(objective, cfg, tmp_path, progress=False).run()
    records = _records(tmp_path)
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert result["loss_last"] < result["loss_first"] - 0.5 and val[-1] < val[0], (result, val)
    logged = [r for r in records if "loss" in r]
    assert len(logged) == 60 and all(0 < r["nll"] < r["loss"] + 1 for r in logged)
    assert (tmp_path / "model" / "model.safetensors").is_file() and result["saved"] == str(tmp_path / "model")

    torch.manual_seed(0)  # on a fixed batch (with unlabelled positions), the loss is torch's label-smoothed CE
    model = objective.build(torch.device("cpu"))
    x, y = objective.batch("val", torch.Generator().manual_seed(0))
    y = y.clone()
    y[:, :5] = -100
    loss, aux = objective.loss(model, (x, y))
    logits = model(x).float().flatten(0, 1)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y.flatten(), label_smoothing=0.1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(aux["nll"], F.cross_entropy(logits, y.flatten()), rtol=1e-5, atol=1e-6)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_step_end(self, trainer, loss, metrics):
        self.events.append(("step", trainer.state.iter))

    def on_eval(self, trainer, losses):
        self.events.append(("eval", trainer.state.iter, tuple(losses)))

    def on_checkpoint(self, trainer, path):
        self.events.append(("checkpoint", trainer.state.iter, (path / "trainer_state.pt").is_file()))

    def on_restore(self, trainer, path):
        self.events.append(("restore", trainer.state.iter))


def test_hooks_fire_at_step_end_eval_checkpoint_and_restore(data, tmp_path):
    loop = dict(batch_size=2, lr=1e-3, warmup_iters=1, eval_interval=2, eval_iters=1, checkpoint_interval=3,
                device="cpu")
    first = Recorder()
    Trainer(_smoothed(data), LoopConfig(max_iters=4, **loop), tmp_path, callbacks=[first], progress=False).run()
    assert first.events == [("step", 1), ("step", 2), ("eval", 2, ("train", "val")), ("checkpoint", 2, True),
                            ("step", 3), ("checkpoint", 3, True), ("step", 4), ("eval", 4, ("train", "val")),
                            ("checkpoint", 4, True)]
    again = Recorder()
    Trainer(_smoothed(data), LoopConfig(max_iters=5, **loop), tmp_path, resume=True, callbacks=[again],
            progress=False).run()
    assert again.events == [("restore", 4), ("step", 5), ("eval", 5, ("train", "val")), ("checkpoint", 5, True)]


class Points(Objective):
    """An epoch-style objective: classify 2-d points by quadrant with a linear layer over shuffled epochs."""
    eval_splits = ()

    def __init__(self, batch_size: int = 5, seed: int = 0):
        g = torch.Generator().manual_seed(42)
        xs = torch.randn(23, 2, generator=g)
        self.items = [(x, int(x[0] > 0) + 2 * int(x[1] > 0)) for x in xs]
        self.batches = EpochBatches(self.items, batch_size, seed)

    def build(self, device):
        return nn.Sequential(nn.Linear(2, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 4)).to(device)

    def batch(self, split, rng):
        return self.batches.next()

    def loss(self, model, batch):
        x = torch.stack([p for p, _ in batch])
        return F.cross_entropy(model(x), torch.tensor([c for _, c in batch])), {}

    def state_dict(self):
        return self.batches.state_dict()

    def load_state_dict(self, state):
        self.batches.load_state_dict(state)


def test_epoch_batches_visit_every_item_once_per_epoch_in_a_seeded_order():
    batches = EpochBatches(list(range(7)), 3, seed=5)
    epochs = [[i for _ in range(len(batches)) for i in batches.next()] for _ in range(3)]
    assert all(sorted(e) == list(range(7)) for e in epochs) and len({tuple(e) for e in epochs}) == 3
    rng = torch.Generator().manual_seed(5)  # each epoch's order is the next randperm of the seed's generator
    assert epochs == [torch.randperm(7, generator=rng).tolist() for _ in range(3)]
    again = EpochBatches(list(range(7)), 3, seed=5)
    again.next(), again.next()
    state = again.state_dict()
    rest = [again.next() for _ in range(4)]
    again.load_state_dict(state)
    assert [again.next() for _ in range(4)] == rest


def test_epoch_objective_resumes_exactly_and_learns(tmp_path):
    cfg = dict(batch_size=5, lr=5e-2, schedule="linear", warmup_iters=2, lr_decay_iters=25, log_interval=1,
               eval_interval=5, checkpoint_interval=5, device="cpu", seed=3)
    whole = Trainer(Points(), LoopConfig(max_iters=25, **cfg), tmp_path / "whole", progress=False).run()
    Trainer(Points(), LoopConfig(max_iters=12, **cfg), tmp_path / "split", progress=False).run()  # mid-epoch
    Trainer(Points(), LoopConfig(max_iters=25, **cfg), tmp_path / "split", resume=True, progress=False).run()
    losses = {name: {r["iter"]: r["loss"] for r in _records(tmp_path / name)} for name in ("whole", "split")}
    assert list(losses["split"]) == list(range(1, 26)) and losses["split"] == losses["whole"]
    assert whole["iters"] == 25 and whole["loss_last"] < 0.6 * whole["loss_first"]
    assert "val_loss" not in whole


def test_without_an_output_dir_nothing_is_written_and_the_time_budget_stops(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    objective = Points()
    model = objective.build("cpu")
    result = Trainer(objective, LoopConfig(max_iters=1000, max_seconds=1e-6, device="cpu"), model=model,
                     progress=False).run()
    assert result["iters"] == 1 and not any(tmp_path.iterdir()) and not model.training
    assert result["first_loss"] == result["loss"] == result["loss_first"] == result["loss_last"]


@pytest.mark.parametrize("it", [0, 1, 3, 9, 19])
def test_schedules(it):
    cfg = LoopConfig(max_iters=20, lr=1.0, min_lr=0.1, warmup_iters=4)
    fit_style = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0),
                                                  lambda t: min((t + 1) / 4, (20 - t) / 20))
    for _ in range(it):
        fit_style.optimizer.step(), fit_style.step()
    assert lr_at(it, replace(cfg, schedule="linear")) == pytest.approx(fit_style.get_last_lr()[0])  # epochs.fit's
    assert lr_at(it, replace(cfg, schedule="constant")) == 1.0
    cosine = 1.0 * (it + 1) / 5 if it < 4 else 0.1 + 0.45 * (1 + math.cos(math.pi * (it - 4) / 16))
    assert lr_at(it, cfg) == pytest.approx(cosine)
