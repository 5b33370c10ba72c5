"""The mixture-of-experts layer: routing, its losses against hand computations, padding left out of them, the
auxiliary term always in the training loss, capacity drops counted, active-parameter FLOPs, bad configs, and a
``lmstack train`` run on a tiny MoE."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from lmstack.config import build
from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model
from lmstack.model.moe import MoE, auxiliary_losses, load_balancing_loss, moe_layers, router_z_loss
from lmstack.train.config import TrainConfig
from lmstack.train.objectives.causal import IGNORE, causal_lm_loss, with_router_losses
from lmstack.train.pretrain import train

VOCAB = 61


def _model(**kw):
    torch.manual_seed(0)
    return build_model(preset("llama-moe-tiny", vocab_size=VOCAB, n_layer=2, n_embd=32, n_head=4, n_kv_head=2,
                              moe_intermediate_size=24, n_experts=4, **kw))


def test_balance_and_z_loss_match_a_hand_computation():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.1, 0.4], [0.2, 0.2, 0.6]])
    experts = torch.tensor([[0, 1], [1, 2], [0, 2], [2, 0]])
    f = [3 / 8, 2 / 8, 3 / 8]  # token-choices per expert / (M k)
    P = [1.5 / 4, 1.1 / 4, 1.4 / 4]
    assert load_balancing_loss(probs, experts, 3).item() == pytest.approx(3 * sum(a * b for a, b in zip(f, P)))
    assert load_balancing_loss(torch.full((4, 3), 1 / 3), torch.tensor([[0], [1], [2], [0]]), 3).item() \
        == pytest.approx(1.0)  # f = (1/2, 1/4, 1/4), P uniform: 3 * 1/3 = 1
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    z = [math.log(sum(math.exp(v) for v in row)) ** 2 for row in logits.tolist()]
    assert router_z_loss(logits).item() == pytest.approx(sum(z) / 2)


def test_gathered_and_dense_dispatch_agree():
    moe = moe_layers(_model())[0]
    h = torch.randn(10, 32)
    _, experts, weights = moe.route(h)
    torch.testing.assert_close(moe.experts.gathered(h, experts, weights), moe.experts.dense(h, experts, weights))
    # top-k with renormalised weights is the weighted sum of the chosen experts, written out
    gate_up, proj = moe.experts.gate_up.stacked(), moe.experts.proj.stacked()
    t = 3
    want = sum(w * (torch.nn.functional.silu(gate_up[e, :24] @ h[t]) * (gate_up[e, 24:] @ h[t])) @ proj[e].T
               for w, e in zip(weights[t], experts[t]))
    torch.testing.assert_close(moe.experts.gathered(h, experts, weights)[t], want)
    assert torch.allclose(weights.sum(-1), torch.ones(10))


def test_padding_rows_do_not_change_the_auxiliary_loss():
    model = _model().train()
    x = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    y[1, 8:] = IGNORE  # row 1: right padding after position 7
    x[1, 8:] = 0
    total, metrics = with_router_losses(model, y, *_lm(model, x, y))
    padded_x = torch.cat([x, torch.zeros(3, 12, dtype=torch.long)])  # three padding rows, all targets -100
    padded_y = torch.cat([y, torch.full((3, 12), IGNORE)])
    total2, metrics2 = with_router_losses(model, padded_y, *_lm(model, padded_x, padded_y))
    assert total2.item() == pytest.approx(total.item(), abs=1e-6)  # the same CE, the same router terms
    for k in metrics:
        assert float(metrics2[k]) == pytest.approx(float(metrics[k]), abs=1e-6), k
    ce = _lm(model, padded_x, padded_y)[0]
    counted, _ = auxiliary_losses(model)  # without the mask the padding counts: another value
    assert counted.item() != pytest.approx(total.item() - ce.item(), abs=1e-6)


def _lm(model, x, y):
    return causal_lm_loss(model(x), y), {}


def test_the_training_loss_always_includes_the_router_terms():
    x = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, 1)
    losses = {}
    for coef in (0.0, 0.5):
        model = _model(router_aux_coef=coef, router_z_coef=0.0).train()
        ce = _lm(model, x, y)[0]
        total, metrics = with_router_losses(model, y, ce, {})
        losses[coef] = (total - ce).item(), metrics["moe_balance"].item()
        if coef:
            total.backward()
            assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0
    assert losses[0.0][0] == 0.0
    assert losses[0.5][0] == pytest.approx(0.5 * losses[0.5][1], rel=1e-5)  # mean over layers of 0.5 * L_bal
    model.eval()
    with torch.no_grad():
        model(x)
    assert auxiliary_losses(model) == (None, {})  # evaluation: the language-model loss alone


def test_capacity_drops_are_counted_and_evaluation_is_dropless():
    model = _model(capacity_factor=0.5, router_aux_coef=0.0).train()
    x = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(3))
    model(x)
    moe = model.blocks[0].mlp
    _, experts, kept = moe.last
    capacity = math.ceil(0.5 * 32 * 2 / 4)  # 8 choices per expert
    counts = torch.bincount(experts[kept], minlength=4)
    assert counts.max() <= capacity
    want = sum(max(0, int(n) - capacity) for n in torch.bincount(experts.reshape(-1), minlength=4))
    assert int((~kept).sum()) == want > 0
    first = experts[:, 0]  # first choices go before second choices: a second choice is never kept over a first
    for e in range(4):
        if (~kept[:, 0] & (first == e)).any():
            assert not (kept[:, 1] & (experts[:, 1] == e)).any()
    _, metrics = auxiliary_losses(model)
    assert metrics["moe_dropped"].item() > 0
    model.eval()
    with torch.no_grad():
        dropless = model(x)
    assert torch.equal(dropless, _model(router_aux_coef=0.0).eval()(x))


def test_flops_count_active_parameters():
    model = _model(n_experts_per_tok=2)
    d, inter, E, k, L = 32, 24, 4, 2, 2
    expert = 3 * d * inter
    assert model.num_params() - model.active_params() == L * (E - k) * expert
    dense = build_model(preset("llama-tiny", vocab_size=VOCAB, n_layer=2, n_embd=32, n_head=4, n_kv_head=2,
                               intermediate_size=k * inter))
    # top-2 of 4 experts of width 24 use the FLOPs of a dense MLP of width 48, plus the router's d * E per layer
    assert model.flops_per_token() - dense.flops_per_token() == 6 * L * d * E


@pytest.mark.parametrize("fields, message", [
    (dict(n_experts=4, n_experts_per_tok=5), "model.n_experts_per_tok=5 must be between 1 and model.n_experts=4"),
    (dict(capacity_factor=0.0), "model.capacity_factor must be > 0"),
    (dict(capacity_factor=-1.0), "model.capacity_factor must be > 0"),
    (dict(n_experts=-2), "model.n_experts must be >= 0"),
])
def test_bad_configs_are_refused_in_one_line(fields, message):
    with pytest.raises(LmstackError, match=message) as e:
        preset("llama-moe-tiny", **fields)
    assert "\n" not in str(e.value)


def test_cli_refuses_a_top_k_above_the_expert_count(tmp_path):
    run = subprocess.run([sys.executable, "-m", "lmstack", "train", "--data", str(tmp_path), "--out",
                          str(tmp_path / "out"), "--model.family", "mixtral", "--model.n_experts", "2",
                          "--model.n_experts_per_tok", "3"], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "n_experts_per_tok=3" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_lmstack_train_runs_a_tiny_moe(tiny_shards, tmp_path):
    model = dict(family="mixtral", n_layer=2, n_head=2, n_kv_head=1, n_embd=32, block_size=32, bias=False,
                 activation="silu", n_experts=4, n_experts_per_tok=2, moe_intermediate_size=32)
    cfg = build(TrainConfig, {"data": tiny_shards, "out": tmp_path, "model": model, "batch_size": 8,
                              "max_iters": 30, "eval_interval": 30, "eval_iters": 2, "lr": 1e-2, "warmup_iters": 5,
                              "log_interval": 5})
    result = train(cfg)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert {"moe_balance", "moe_z", "moe_load_max", "moe_dropped"} <= set(logged[-1])
    assert logged[-1]["loss"] < logged[0]["loss"] and result["val_loss"] < records[0]["loss"]
    assert (tmp_path / "expert_load.png").stat().st_size > 1000
    loaded = load_model(tmp_path / "model")
    assert loaded.config.family == "mixtral" and isinstance(loaded.blocks[0].mlp, MoE)
