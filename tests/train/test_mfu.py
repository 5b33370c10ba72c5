"""MFU: PaLM's FLOP formula against a hand count, the datasheet peak table (an unknown GPU gets no MFU, never
another device's peak), the CPU's measured and cached peak, the trainer's tokens/s and MFU, the GPU recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmstack.config import build, load_yaml
from lmstack.data.shards import TokenShards
from lmstack.model import build_model, preset
from lmstack.model.config import ModelConfig
from lmstack.model.transformer import palm_flops_per_token
from lmstack.text.tokenizer import Tokenizer
from lmstack.train import mfu
from lmstack.train.config import LoopConfig, TrainConfig
from lmstack.train.objectives.causal import CausalLM
from lmstack.train.trainer import Trainer

CONFIGS = Path(__file__).parents[2] / "lmstack" / "configs"


def test_flops_per_token_is_palm_formula_for_gpt2_small():
    with torch.device("meta"):
        model = build_model(preset("gpt2-small"))
    d, L, V, T = 768, 12, 50257, 1024
    # by hand: per block 4d^2 (attention) + 8d^2 (MLP) weights, plus biases and two LayerNorms; tied head = wte
    block = 12 * d * d + (3 * d + d + 4 * d + d) + 2 * 2 * d
    n = L * block + V * d + 2 * d  # + the final LayerNorm; position embeddings are a lookup: left out
    assert model.num_params() == n
    assert model.flops_per_token() == 6 * n + 12 * L * 12 * 64 * T == palm_flops_per_token(n, L, 12, 64, T)
    assert round(model.flops_per_token() / 1e6) == 855  # 6 x 123.6M + 113M: ~0.86 GFLOP per trained token


def test_untied_token_embeddings_are_a_lookup():
    cfg = ModelConfig(family="llama", n_layer=2, n_head=2, n_kv_head=1, n_embd=32, block_size=16, bias=False,
                      activation="silu", tie_embeddings=False, vocab_size=100)
    model = build_model(cfg)
    matmul = sum(p.numel() for p in model.parameters()) - model.tok_emb.weight.numel()  # lm_head stays
    assert model.flops_per_token(16) == 6 * matmul + 12 * 2 * 2 * 16 * 16


def test_mfu_arithmetic():
    meter = mfu.Utilisation(flops_per_token=10**9, peak=989.4e12, device="H100 SXM")
    assert meter.mfu(400_000) == pytest.approx(4e14 / 989.4e12)  # 40.4%
    assert mfu.Utilisation(None, 1e12, "x").mfu(1.0) is None and mfu.Utilisation(1, None, "x").mfu(1.0) is None


@pytest.mark.parametrize("name, precision, label, tflops", [
    ("NVIDIA H100 80GB HBM3", "bf16", "H100 SXM", 989.4),
    ("NVIDIA H100 PCIe", "bf16", "H100 PCIe", 756.5),
    ("NVIDIA H100 NVL", "tf32", "H100 NVL", 417.5),
    ("NVIDIA H200", "bf16", "H200 SXM", 989.4),
    ("NVIDIA A100-SXM4-80GB", "bf16", "A100", 312.0),
    ("NVIDIA A100 80GB PCIe", "fp32", "A100", 19.5),
    ("NVIDIA L4", "bf16", "L4", 121.0),
    ("NVIDIA L40S", "bf16", "L40S", 366.5),
])
def test_peak_table(name, precision, label, tflops):
    assert mfu.gpu_peak(name, precision) == (label, tflops * 1e12)


def test_unknown_gpu_gets_no_mfu_and_one_note(monkeypatch, capsys):
    model = build_model(ModelConfig(family="gpt2", n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=50))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA GeForce GTX 1080")
    meters = [mfu.utilisation(model, 8, torch.device("cuda"), bf16=True) for _ in range(2)]
    assert all(m.peak is None and m.mfu(1e6) is None and m.flops_per_token > 0 for m in meters)
    assert capsys.readouterr().err.count("no peak FLOP/s known for 'NVIDIA GeForce GTX 1080'") == 1
    assert mfu.gpu_peak("NVIDIA GeForce GTX 1080", "bf16") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert mfu.utilisation(model, 8, torch.device("cuda"), bf16=True).peak == 989.4e12


def test_cpu_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    cache = tmp_path / "cpu_peak.json"
    first = mfu.cpu_peak(torch.float32, cache)
    assert 1e8 < first < 1e14  # a real machine's fp32 matmul FLOP/s
    monkeypatch.setattr(mfu, "measure_matmul_flops", lambda *a, **k: pytest.fail("measured twice"))
    assert mfu.cpu_peak(torch.float32, cache) == first
    assert list(json.loads(cache.read_text()).values()) == [first]


def test_trainer_logs_tokens_per_s_and_mfu(data, tmp_path, monkeypatch):
    monkeypatch.setattr(mfu, "cpu_peak", lambda dtype, cache=None: 1e11)  # a known peak: 100 GFLOP/s
    tok = Tokenizer.load(data)
    model_cfg = ModelConfig(family="gpt2", n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=tok.vocab_size)
    objective = CausalLM(TokenShards(data, "train"), TokenShards(data, "val"), 4, 32, model_cfg, tok)
    cfg = LoopConfig(max_iters=6, batch_size=4, log_interval=2, eval_interval=6, eval_iters=1, device="cpu",
                     precision="fp32")
    result = Trainer(objective, cfg, tmp_path, progress=False).run()
    flops = build_model(model_cfg).flops_per_token(32)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "loss" in r]
    assert len(steps) == 3 and all(r["mfu"] == pytest.approx(r["tokens_per_s"] * flops / 1e11) for r in steps)
    assert all(r["grad_norm"] > 0 for r in steps)
    assert result["mfu"] == pytest.approx(result["tokens_per_s"] * flops / 1e11)
    assert result["tokens_per_s"] == pytest.approx(result["tokens"] / result["wall_s"], rel=0.05)


def test_gpu_recipe_loads_into_train_config():
    path = CONFIGS / "gpt2_124m_gpu.yaml"
    cfg = build(TrainConfig, load_yaml(path), source=str(path))
    assert cfg.model == ModelConfig(**{**preset("gpt2-small").__dict__, "dropout": 0.0})
    assert (cfg.precision, cfg.compile, cfg.fused_optimizer, cfg.device) == ("bf16", True, True, "cuda")
    assert cfg.batch_size * cfg.grad_accum * cfg.model.block_size == 131072 and cfg.beta2 == 0.95
