"""`lmstack scaling fit / plan / sweep` as functions and through the CLI; bad input gives one clear line."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from lmstack import cli
from lmstack.errors import LmstackError
from lmstack.scaling.commands import scaling_fit, scaling_plan, scaling_sweep
from lmstack.scaling.laws import LossLaw
from lmstack.scaling.runs import param_counts
from lmstack.scaling.sweep import SweepConfig, run_configs
from lmstack.train.config import TrainConfig
from lmstack.model.config import ModelConfig
from lmstack.model.hf import load_model

TRUE = LossLaw(E=1.5, A=300.0, B=900.0, alpha=0.4, beta=0.35)


def _runs(path, k=9, sha="a" * 64, noise=0.001):
    rng = np.random.default_rng(0)
    n = np.repeat([2e5, 6e5, 2e6], 3)[:k]
    d = np.tile([5e6, 2e7, 8e7], 3)[:k]
    loss = TRUE.loss(n, d) * np.exp(rng.normal(0, noise, len(n)))
    records = [{"name": f"r{i}", "params": float(n[i]), "tokens": float(d[i]), "val_loss": float(loss[i]),
                "tokenizer_sha256": sha} for i in range(len(n))]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_fit_writes_the_law_plots_and_backtest(tmp_path):
    _runs(tmp_path / "runs.jsonl")
    out = scaling_fit(tmp_path / "runs.jsonl", bootstrap_samples=8)
    saved = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert saved["law"]["alpha"] == pytest.approx(TRUE.alpha, abs=0.1)
    assert saved["rmse"] < 0.01 and len(saved["bootstrap"]) == 8
    assert saved["backtest"]["held_out"] == ["r8"]  # the largest 6ND
    assert saved["backtest"]["loss_law_abs_error"][0] < 0.05
    assert (tmp_path / "fit" / "loss_vs_compute.png").stat().st_size > 0
    assert (tmp_path / "fit" / "predicted_vs_actual.png").stat().st_size > 0
    lo, hi = out["alpha_interval"]
    assert lo <= hi
    plan = scaling_plan(flops=1e17, fit=tmp_path / "fit" / "fit.json")
    assert plan["loss_interval"][0] <= plan["loss_interval"][1]
    assert 6 * plan["n_opt"] * plan["d_opt"] == pytest.approx(1e17)
    with pytest.raises(LmstackError, match="fit.json exists"):
        scaling_fit(tmp_path / "runs.jsonl", bootstrap_samples=0)


def test_fit_refuses_bad_runs_and_writes_nothing(tmp_path):
    _runs(tmp_path / "four.jsonl", k=4)
    with pytest.raises(LmstackError, match="5 parameters but only 4 run"):
        scaling_fit(tmp_path / "four.jsonl", out=tmp_path / "o1")
    records = _runs(tmp_path / "mixed.jsonl")
    records[5]["tokenizer_sha256"] = "b" * 64
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(LmstackError, match=r"different tokenizers.*'r0' has tokenizer sha256 a{12}.*'r5' has b{12}"):
        scaling_fit(tmp_path / "mixed.jsonl", out=tmp_path / "o2")
    records[5]["tokenizer_sha256"] = "a" * 64
    lines = [json.dumps(r) for r in records]
    lines[2] = lines[2].replace(str(records[2]["val_loss"]), "NaN")
    (tmp_path / "nan.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(LmstackError, match=r"nan.jsonl:3: val_loss is nan"):
        scaling_fit(tmp_path / "nan.jsonl", out=tmp_path / "o3")
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))


SCALING = {"scaling sweep": "scaling_sweep", "scaling fit": "scaling_fit", "scaling plan": "scaling_plan"}


@pytest.mark.parametrize("name", sorted(SCALING))
def test_commands_document_every_option(name, monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, name, (f"lmstack.scaling.commands:{SCALING[name]}", "scaling"))
    with pytest.raises(SystemExit) as stop:
        cli.main([*name.split(), "--help"])
    assert stop.value.code == 0
    shown = "".join(capsys.readouterr().out.split())
    fn = cli._resolve(cli.COMMANDS[name][0])
    docs = cli._param_docs(fn)
    for param in inspect.signature(fn).parameters:
        if param != "cfg":
            assert docs.get(param) and "".join(docs[param].split()) in shown, param


def test_cli_runs_the_two_word_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "scaling plan", ("lmstack.scaling.commands:scaling_plan", "plan"))
    cli.main(["scaling", "plan", "--flops", "5.76e23", "--preset", "chinchilla", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["n_opt"] == pytest.approx(4.03e10, rel=0.01)
    monkeypatch.setitem(cli.COMMANDS, "scaling fit", ("lmstack.scaling.commands:scaling_fit", "fit"))
    _runs(tmp_path / "runs.jsonl", k=3)
    with pytest.raises(SystemExit) as e:
        cli.main(["scaling", "fit", str(tmp_path / "runs.jsonl")])
    assert e.value.code != 0
    assert "fit at least 5" in capsys.readouterr().err


def test_sweep_trains_the_grid_resumes_and_records_n_d_c(tiny_shards, tmp_path):
    data = tiny_shards
    base = TrainConfig(model=ModelConfig(family="llama", block_size=16, bias=False, activation="silu"),
                       batch_size=4, eval_iters=1, log_interval=5, warmup_iters=2, device="cpu")
    cfg = SweepConfig(data=data, out=tmp_path / "sw", sizes=["1x16", "2x32"], tokens=[640, 1280], train=base)
    first = scaling_sweep(cfg)
    assert (first["runs"], first["trained"]) == (4, 4)
    records = [json.loads(line) for line in (tmp_path / "sw" / "runs.jsonl").read_text().splitlines()]
    by_name = {r["name"]: r for r in records}
    r = by_name["L2-d32-D1280"]
    assert r["tokens"] == 1280 and r["iters"] == 20  # 1280 / (4 x 16)
    model = load_model(tmp_path / "sw" / "runs" / "L2-d32-D1280" / "model")
    total, non_embedding = param_counts(model)
    assert (r["params"], r["params_non_embedding"]) == (total, total - 300 * 32)  # tied: one embedding matrix
    assert r["flops"] == 6 * total * 1280
    assert len({x["tokenizer_sha256"] for x in records}) == 1 and all(np.isfinite(x["val_loss"]) for x in records)
    saved = json.loads((tmp_path / "sw" / "runs" / "L2-d32-D1280" / "train_config.json").read_text())
    assert saved["max_iters"] == 20 and saved["lr_decay_iters"] is None and saved["schedule"] == "cosine"
    again = scaling_sweep(cfg)
    assert (again["trained"], again["skipped"]) == (0, 4)
    changed = SweepConfig(data=data, out=tmp_path / "sw", sizes=["1x16"], tokens=[640],
                          train=TrainConfig(model=base.model, batch_size=4, lr=1e-2, device="cpu"))
    with pytest.raises(LmstackError, match="other settings"):
        scaling_sweep(changed)


def test_a_degenerate_fit_predicts_with_l_of_c(tmp_path):
    """Runs whose loss depends on compute alone: L(N, D) cannot split N from D; fit.json selects L(C) and the
    plan's loss (and interval) comes from it."""
    law_c = {"a": 50.0, "b": -0.2, "c": 1.2}
    n = np.repeat([1e5, 3e5, 1e6], 3)
    d = np.tile([1e6, 3e6, 1e7], 3)
    loss = law_c["a"] * (6 * n * d) ** law_c["b"] + law_c["c"]
    records = [{"name": f"r{i}", "params": float(n[i]), "tokens": float(d[i]), "val_loss": float(loss[i]),
                "tokenizer_sha256": "a" * 64} for i in range(9)]
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = scaling_fit(tmp_path / "runs.jsonl", bootstrap_samples=6, holdout=2)
    assert out["predict_with"] == "compute_law", out["predict_with_reason"]
    plan = scaling_plan(flops=1e14, fit=tmp_path / "fit" / "fit.json")
    assert plan["predicted_by"].startswith("L(C)")
    assert plan["loss"] == pytest.approx(law_c["a"] * 1e14 ** law_c["b"] + law_c["c"], rel=1e-3)
    assert plan["loss_interval"][0] <= plan["loss"] + 1e-6 and plan["loss"] - 1e-6 <= plan["loss_interval"][1]


def test_lr_width_scales_each_runs_learning_rate_as_mup(tmp_path):
    base = TrainConfig(model=ModelConfig(family="llama", block_size=16, bias=False, activation="silu"),
                       lr=4e-3, min_lr=4e-4)
    runs = run_configs(SweepConfig(out=tmp_path, sizes=["1x32", "2x128"], tokens=[640], train=base, lr_width=64))
    assert runs["L1-d32-D640"].lr == pytest.approx(8e-3) and runs["L1-d32-D640"].min_lr == pytest.approx(8e-4)
    assert runs["L2-d128-D640"].lr == pytest.approx(2e-3)
    plain = run_configs(SweepConfig(out=tmp_path, sizes=["2x128"], tokens=[640], train=base))
    assert plain["L2-d128-D640"].lr == 4e-3
    with pytest.raises(LmstackError, match="lr_width"):
        SweepConfig(out=tmp_path, lr_width=0)
