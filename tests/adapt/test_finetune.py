"""``lmstack finetune``: one loop for every method; it learns, leaves the base untouched, and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.adapt.methods import load_adapted
from lmstack.cli import main
from lmstack.config import build

LOOP = {"batch_size": 4, "max_iters": 30, "eval_interval": 10, "eval_iters": 2, "log_interval": 1,
        "checkpoint_interval": 10, "warmup_iters": 3, "lr": 3e-3, "max_len": 120}


def _config(base, corpus, out, method: str, **over) -> FinetuneConfig:
    values = {**LOOP, "model": str(base), "data": [str(corpus / "sft_train.jsonl")], "out": str(out),
              "method": method, "prefix": {"n_virtual": 4}, "prompt": {"n_virtual": 4}, **over}
    return build(FinetuneConfig, values)


def _losses(out) -> dict[int, float]:
    records = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return {r["iter"]: r["loss"] for r in records if "loss" in r}


@pytest.fixture(scope="module")
def tuned(base, corpus, tmp_path_factory):
    """The random base after 40 steps of full fine-tuning: a model that knows the format a little, as a PEFT
    method's base would (a soft prompt can hardly steer a model of random weights)."""
    out = tmp_path_factory.mktemp("tuned")
    finetune(_config(base, corpus, out, "full", max_iters=40, lr=1e-2, eval_interval=40, checkpoint_interval=40))
    return out / "model"


@pytest.mark.parametrize("method", ["lora", "adapter", "prefix", "prompt", "full"])
def test_every_method_learns_and_peft_leaves_the_base_bit_identical(tuned, corpus, tmp_path, method):
    """Loss on 48 conversations falls while training on them (validation = the training set, measured on the same
    batches each time). A PEFT method on this barely trained base learns slowly: it cannot touch the
    embeddings, where a young model's gains are; bench/finetune_methods.py measures them on a pretrained one."""
    base = tuned
    before = load_file(str(base / "model.safetensors"))
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join((corpus / "sft_train.jsonl").read_text().splitlines()[:48]) + "\n")
    result = finetune(_config(base, corpus, tmp_path, method, data=[str(small)], val_data=[str(small)],
                              lr={"prompt": 0.3, "prefix": 3e-2, "full": 3e-3}.get(method, 1e-2)))
    records = map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert val[-1] < val[0] - {"full": 0.1, "prompt": 0.001}.get(method, 0.01), val  # paired: same batches each time
    assert result["val_examples"] > 0 and result["trainable_params"] > 0
    after = load_file(str(base / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    if method == "full":
        assert result["trainable_fraction"] == 1.0 and (tmp_path / "model" / "model.safetensors").is_file()
        return
    assert result["trainable_fraction"] < 0.5
    model, _ = load_adapted(base, tmp_path / "adapter")
    frozen = {k.replace(".base.", ".").replace(".inner.", "."): v for k, v in model.state_dict().items()}
    base_model, _ = load_adapted(base)
    assert all(torch.equal(frozen[k.removeprefix("base.")] if k in frozen else v, v)
               for k, v in base_model.state_dict().items())


def test_resume_continues_to_the_same_losses(base, corpus, tmp_path):
    fixed = {"max_iters": 12, "lr_decay_iters": 12, "checkpoint_interval": 4, "eval_interval": 4,
             "lora": {"dropout": 0.1}}
    finetune(_config(base, corpus, tmp_path / "whole", "lora", **fixed))
    finetune(_config(base, corpus, tmp_path / "split", "lora", **{**fixed, "max_iters": 8}))
    finetune(_config(base, corpus, tmp_path / "split", "lora", **fixed), resume=True)
    whole, split = _losses(tmp_path / "whole"), _losses(tmp_path / "split")
    assert list(split) == list(range(1, 13))
    assert all(whole[i] == pytest.approx(split[i], abs=1e-6) for i in range(9, 13))
    checkpoint = tmp_path / "split" / "checkpoint"  # only the trained parameters: the base stays where it was
    saved = load_file(str(checkpoint / "trainable.safetensors"))
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)
    assert not (checkpoint / "model.safetensors").exists()


def test_cli_finetune_then_merge_then_generate(base, corpus, tmp_path, capsys):
    common = [f"--{k}={v}" for k, v in LOOP.items() if k != "max_iters"]
    main(["finetune", "--json", "--model", str(base), "--data", str(corpus / "sft_train.jsonl"), "--out",
          str(tmp_path), "--method", "lora", "--lora.targets", "all-linear", "--max_iters", "4", *common])
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "lora" and result["iters"] == 4
    main(["merge", str(base), str(tmp_path / "adapter"), "--out", str(tmp_path / "merged"), "--json"])
    assert json.loads(capsys.readouterr().out)["merged_layers"] > 0
    for args in (["--model", str(base), "--adapter", str(tmp_path / "adapter")], ["--model", str(tmp_path / "merged")]):
        main(["generate", "Where does", *args, "--chat", "--max-new-tokens", "5", "--json"])
        assert json.loads(capsys.readouterr().out)["tokens"] <= 5


def test_bad_targets_and_data_fail_with_one_line(base, corpus, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--model", str(base), "--data", str(corpus / "sft_train.jsonl"), "--out", str(tmp_path),
              "--lora.targets", "attn"])
    assert "lora.targets: 'attn' matches no layer" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"instruction": "x"}\n')
    with pytest.raises(SystemExit):
        main(["finetune", "--model", str(base), "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "bad.jsonl:1: alpaca record needs a string 'output'" in err and "Traceback" not in err
