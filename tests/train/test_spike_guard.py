"""The loss-spike guard: an injected spike (one poisoned batch; the learning rate x100 for 3 steps) wrecks an
unguarded run, and the guard (skip / rollback) ends within 1% of the clean run's validation loss; the guard's
windows survive a resume exactly; PaLM's z-loss is its formula."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lmstack.config import build
from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.config import LoopConfig, TrainConfig
from lmstack.train.objectives.causal import IGNORE, CausalLM, causal_lm_loss, log_z_squared
from lmstack.train.pretrain import train
from lmstack.train.spike_guard import RollingStats, SpikeGuard
from lmstack.train.spike_injection import LrSpike, PoisonedLM
from lmstack.train.trainer import Trainer

MODEL = ModelConfig(family="llama", n_layer=2, n_head=2, n_kv_head=1, n_embd=32, block_size=32, bias=False,
                    activation="silu")
SPIKE = 80  # the 0-based step where the spike is injected
LOOP = dict(max_iters=160, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_iters=10, eval_interval=200, eval_iters=8,
            log_interval=1, checkpoint_interval=40, device="cpu", spike_window=64, spike_min_history=32,
            rollback_skip=2)


def _run(data, out, poison: int | None = None, lr_spike: bool = False, **loop) -> dict:
    tok = Tokenizer.load(data)
    objective = PoisonedLM(TokenShards(data, "train"), TokenShards(data, "val"), 8, 32,
                           MODEL.replace(vocab_size=tok.vocab_size), tok, at=poison)
    callbacks = [LrSpike(range(SPIKE, SPIKE + 3))] if lr_spike else []
    return Trainer(objective, LoopConfig(**{**LOOP, **loop}), out, callbacks=callbacks, progress=False).run()


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_skip_drops_a_poisoned_batch_and_ends_where_the_clean_run_does(data, tmp_path):
    """Clipping off (clipping would blunt this spike): one batch x1000 poisons AdamW's second moments and the
    unguarded run stalls; the skip rule refuses that update (and a few natural outliers) and ends within 1%."""
    clean = _run(data, None, grad_clip=0.0)  # no output directory: no files
    spiked = _run(data, None, poison=SPIKE, grad_clip=0.0)
    guarded = _run(data, tmp_path / "guarded", poison=SPIKE, grad_clip=0.0, spike_guard="skip")
    assert spiked["val_loss"] > clean["val_loss"] * 1.05, (clean["val_loss"], spiked["val_loss"])
    assert abs(guarded["val_loss"] - clean["val_loss"]) < 0.01 * clean["val_loss"], (clean, guarded)
    poisoned = [e for e in guarded["spike_events"] if e["iter"] == SPIKE + 1]  # events count steps from 1
    assert poisoned and poisoned[0]["action"] == "skip" and poisoned[0]["loss"] > poisoned[0]["loss_threshold"]
    assert guarded["spike_skipped"] == len(guarded["spike_events"]) and guarded["iters"] == 160
    logged = [r["spike"] for r in _records(tmp_path / "guarded") if "spike" in r]
    assert logged == guarded["spike_events"]  # every event in metrics.jsonl, as in the result


def test_rollback_recovers_from_a_learning_rate_spike(data, tmp_path):
    """lr x100 for 3 steps: the unguarded run ends far above the clean one; rollback restores the checkpoint
    before the spike (the skip rule could only refuse the steps after the first, already applied, update)."""
    clean = _run(data, None)
    spiked = _run(data, None, lr_spike=True)
    guarded = _run(data, tmp_path / "guarded", lr_spike=True, spike_guard="rollback")
    assert spiked["val_loss"] > clean["val_loss"] * 1.1, (clean["val_loss"], spiked["val_loss"])
    assert abs(guarded["val_loss"] - clean["val_loss"]) < 0.01 * clean["val_loss"], (clean, guarded)
    events = guarded["spike_events"]
    assert events and events[0]["iter"] == SPIKE + 2  # the first spiked update shows in the next step's loss
    assert all(e["action"] == f"rollback to iter {SPIKE}, 2 steps of batches skipped" for e in events)
    assert guarded["spike_rollbacks"] == len(events)


def test_guard_state_resumes_exactly(data, tmp_path):
    """A tight guard (1 sigma: it fires often) decides the same steps, and the losses match exactly, whether the
    run is cut at step 30 and resumed or not."""
    loop = dict(max_iters=60, lr_decay_iters=60, checkpoint_interval=10, eval_interval=30, spike_guard="skip",
                spike_sigma=1.0, spike_window=16, spike_min_history=8)
    full = _run(data, tmp_path / "full", **loop)
    _run(data, tmp_path / "cut", **{**loop, "max_iters": 30})
    tok = Tokenizer.load(data)
    objective = CausalLM(TokenShards(data, "train"), TokenShards(data, "val"), 8, 32,
                         MODEL.replace(vocab_size=tok.vocab_size), tok)
    resumed = Trainer(objective, LoopConfig(**{**LOOP, **loop}), tmp_path / "cut", resume=True, progress=False).run()
    assert resumed["spike_events"] == full["spike_events"]
    assert any(e["iter"] > 30 for e in full["spike_events"]) and any(e["iter"] < 30 for e in full["spike_events"])
    timeless = lambda out: [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu")}  # noqa: E731
                            for r in _records(out)]
    assert timeless(tmp_path / "cut") == timeless(tmp_path / "full")  # losses, grad norms, spike events
    assert resumed["val_loss"] == full["val_loss"]


def test_rolling_threshold_is_mean_plus_k_sample_std():
    stats = RollingStats(4)
    for v in [9.0, 1.0, 2.0, 3.0, 4.0]:  # the first falls out of the window
        stats.values.append(v)
    window = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert stats.threshold(6.0) == pytest.approx(float(window.mean() + 6 * window.std()))
    guard = SpikeGuard("skip", sigma=6.0, window=4, min_history=4)
    with pytest.raises(LmstackError, match="not a policy"):
        SpikeGuard("freeze")
    assert guard.state_dict()["losses"] == []


def test_non_finite_steps_are_always_refused_and_stay_out_of_the_window():
    parallel = SimpleNamespace(is_main=lambda: True, sharded=False)
    trainer = SimpleNamespace(state=SimpleNamespace(iter=0), out=None, parallel=parallel)
    guard = SpikeGuard("rollback", min_history=3)
    decisions = []
    for loss in [2.0, 2.1, float("nan"), 1.9, 2.0, 50.0]:
        decisions.append(guard.on_before_optimizer_step(trainer, loss, torch.tensor(1.0)))
        trainer.state.iter += 1
    assert decisions == [True, True, False, True, True, False]  # nan before the history fills; then a spike
    assert list(guard.losses.values) == [2.0, 2.1, 1.9, 2.0, 50.0]  # finite values enter, spikes included
    assert [(e["iter"], e["reason"], e["action"]) for e in guard.events] == [
        (3, "non-finite", "skip (no checkpoint yet)"), (6, "loss", "skip (no checkpoint yet)")]


def test_z_loss_is_palm_formula_and_trains(data, tmp_path):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11) * 3
    targets = torch.randint(0, 11, (2, 5))
    targets[0, :2] = IGNORE
    keep = targets != IGNORE
    log_z = torch.log(torch.exp(logits.double()).sum(-1))[keep]  # by hand: log sum_v exp(logit_v)
    nll = (log_z - logits.double().gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)[keep]).mean()
    torch.testing.assert_close(log_z_squared(logits, targets).double(), (log_z ** 2).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(causal_lm_loss(logits, targets, z_loss=1e-2).double(),
                               nll + 1e-2 * (log_z ** 2).mean(), rtol=1e-5, atol=1e-6)
    assert causal_lm_loss(logits, targets) == F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    cfg = {"data": data, "out": tmp_path, "model": {**MODEL.__dict__, "n_kv_head": 1}, "batch_size": 8,
           "max_iters": 30, "eval_interval": 30, "eval_iters": 2, "log_interval": 1, "z_loss": 1e-2}
    cfg["model"] = {k: v for k, v in cfg["model"].items() if k in ("family", "n_layer", "n_head", "n_kv_head",
                                                                  "n_embd", "block_size", "bias", "activation")}
    result = train(build(TrainConfig, cfg))
    logged = [r for r in _records(tmp_path) if "loss" in r]
    assert all(r["loss"] == pytest.approx(r["ce"] + 1e-2 * r["log_z_sq"], rel=1e-5) for r in logged)
    assert logged[-1]["log_z_sq"] < logged[0]["log_z_sq"] and result["iters"] == 30
    with pytest.raises(LmstackError, match="z_loss: the prefix_lm objective"):
        train(build(TrainConfig, {**cfg, "out": tmp_path / "p", "objective": "prefix_lm",
                                  "model": {**cfg["model"], "family": "prefix_lm"}}))
    with pytest.raises(LmstackError, match="z_loss must be"):
        build(TrainConfig, {"z_loss": -1.0})
