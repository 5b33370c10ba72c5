"""The trainer learns, and an interrupted run resumes to exactly the losses of an uninterrupted one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from lmstack.config import build
from lmstack.eval.perplexity import unigram_baseline
from lmstack.model.hf import load_model
from lmstack.train.config import TrainConfig
from lmstack.train.pretrain import train

MODEL = {"family": "llama", "n_layer": 2, "n_head": 2, "n_kv_head": 1, "n_embd": 32, "block_size": 32,
         "bias": False, "activation": "silu"}
ARGS = ["--model.family", "llama", "--model.n_layer", "2", "--model.n_head", "2", "--model.n_kv_head", "1",
        "--model.n_embd", "32", "--model.block_size", "32", "--model.bias", "false", "--batch_size", "4",
        "--eval_interval", "10", "--eval_iters", "2", "--log_interval", "1", "--checkpoint_interval", "5",
        "--lr", "3e-3", "--warmup_iters", "5"]


def _run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lmstack", "train", *ARGS, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _losses(out) -> dict[int, float]:
    return {r["iter"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def _checkpoint_iter(out) -> int:
    try:
        return json.loads((out / "checkpoint" / "trainer_state.json").read_text())["iter"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_resume_after_kill_9_matches_uninterrupted(data, tmp_path):
    common = ["--data", str(data), "--max_iters", "40"]
    full = _run(*common, "--out", str(tmp_path / "full"))
    assert full.wait(timeout=300) == 0, full.stderr.read()

    victim = _run(*common, "--out", str(tmp_path / "cut"))
    deadline = time.time() + 120
    while _checkpoint_iter(tmp_path / "cut") < 15 and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert 15 <= _checkpoint_iter(tmp_path / "cut") < 40, "the run must be cut mid-way for this test"

    resumed = _run(*common, "--out", str(tmp_path / "cut"), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")  # exact equality, every logged step


def test_ctrl_c_checkpoints_and_exits_130(data, tmp_path):
    run = _run("--data", str(data), "--max_iters", "100000", "--out", str(tmp_path))
    deadline = time.time() + 120
    while _checkpoint_iter(tmp_path) < 5 and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=120) == 130
    err = run.stderr.read()
    assert "interrupted at iteration" in err and "--resume" in err and "Traceback" not in err
    last_logged = max(_losses(tmp_path))
    assert _checkpoint_iter(tmp_path) == last_logged  # the checkpoint holds every step that was logged
    load_model(tmp_path / "checkpoint")  # and it is a complete model directory


def test_loss_falls_below_the_unigram_baseline(data, tmp_path):
    cfg = build(TrainConfig, {"data": data, "out": tmp_path, "model": MODEL, "batch_size": 16, "max_iters": 80,
                              "eval_interval": 80, "eval_iters": 4, "lr": 1e-2, "warmup_iters": 5})
    result = train(cfg)
    assert result["val_loss"] < unigram_baseline(data) - 0.3
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert load_model(tmp_path / "model").config.vocab_size == 300


def test_resume_with_another_shape_is_refused(data, tmp_path):
    cfg = {"data": data, "out": tmp_path, "model": MODEL, "batch_size": 2, "max_iters": 2, "eval_interval": 2,
           "eval_iters": 1}
    train(build(TrainConfig, cfg))
    wider = build(TrainConfig, {**cfg, "max_iters": 4, "model": {**MODEL, "n_embd": 64}})
    from lmstack.errors import LmstackError
    with pytest.raises(LmstackError, match="checkpoint model has n_embd=32, but the config asks for n_embd=64"):
        train(wider, resume=True)


def test_mlm_objective_trains_an_encoder_that_transformers_loads(data, tmp_path):
    """`lmstack train --objective mlm` runs the same loop on masked windows and writes a BertForMaskedLM."""
    import torch
    from transformers import BertForMaskedLM

    from lmstack.model.families.bert import load_encoder

    cfg = build(TrainConfig, {"data": str(data), "out": str(tmp_path), "objective": "mlm", "max_iters": 40,
                              "batch_size": 8, "eval_interval": 20, "eval_iters": 2, "lr": 3e-3, "warmup_iters": 5,
                              "model": {"family": "bert", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}})
    result = train(cfg)
    losses = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in losses if "val_loss" in r]
    assert val[-1] < val[0] and result["iters"] == 40
    ours, _ = load_encoder(tmp_path / "model", head="mlm")
    theirs = BertForMaskedLM.from_pretrained(tmp_path / "model").eval()
    x = torch.randint(0, ours.config.vocab_size, (2, 16))
    assert torch.allclose(ours.eval()(x), theirs(input_ids=x).logits, atol=1e-4)
