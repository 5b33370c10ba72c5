"""``lmstack dpo``: a tiny SFT'd policy learns the synthetic preferences, every loss trains, the reference
log-probs are computed once from the base, cached, reused on resume and refused for other data or models."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.adapt.methods import load_adapted
from lmstack.align.dpo_command import DPOConfig, dpo, read_splits
from lmstack.align.dpo import PreferenceObjective
from lmstack.align.losses import LOSS_TYPES
from lmstack.align.rl_commands import GRPOConfig, grpo
from lmstack.align.reference import reference_logps
from lmstack.cli import main
from lmstack.config import build
from lmstack.data.synth import synth
from lmstack.errors import LmstackError
from lmstack.model import build_model, moe, preset
from lmstack.model.hf import load_causal_lm, save_model
from lmstack.model.scoring import token_logprobs
from lmstack.text.tokenizer import Tokenizer, train_bpe
from safetensors.torch import load_file

LOOP = {"batch_size": 8, "eval_interval": 10, "eval_iters": 2, "log_interval": 1, "checkpoint_interval": 10,
        "warmup_iters": 2, "max_len": 128, "lora": {"r": 8, "alpha": 16, "targets": ["all-linear"]}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth(out=root, scale=0.05)
    return root


@pytest.fixture(scope="module")
def sft_model(corpus, tmp_path_factory):
    """A random llama (2 layers) fine-tuned 40 steps on the synthetic conversations: it knows the format a little
    and has no preference between the answers of the pairs (it never saw them)."""
    texts = [m["content"] for line in (corpus / "sft_train.jsonl").read_text().splitlines()
             for m in json.loads(line)["messages"]]
    for line in (corpus / "preferences_train.jsonl").read_text().splitlines():
        r = json.loads(line)
        texts += [r["chosen"], r["rejected"], r["prompt"][0]["content"]]
    tokenizer = train_bpe(texts, vocab_size=400)
    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=160, n_layer=2))
    root = tmp_path_factory.mktemp("policy")
    save_model(model, root / "base", tokenizer)
    finetune(build(FinetuneConfig, {"model": str(root / "base"), "data": [str(corpus / "sft_train.jsonl")],
                                    "out": str(root / "sft"), "method": "full", "batch_size": 8, "max_iters": 40,
                                    "lr": 1e-2, "warmup_iters": 3, "eval_interval": 40, "eval_iters": 1,
                                    "checkpoint_interval": 40, "max_len": 128}))
    return root / "sft" / "model"


def _config(model, corpus, out, **over) -> DPOConfig:
    values = {**LOOP, "model": str(model), "data": [str(corpus / "preferences_train.jsonl")],
              "val_data": [str(corpus / "preferences_test.jsonl")], "out": str(out), **over}
    return build(DPOConfig, values)


def _losses(out) -> dict[int, float]:
    records = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return {r["iter"]: r["loss"] for r in records if "loss" in r}


def test_dpo_with_lora_learns_the_held_out_preference(sft_model, corpus, tmp_path):
    """After 40 steps the policy's implicit reward prefers the chosen answer on most held-out pairs whose answers
    differ in kind a tiny model can see (rude vs polite, the asked language vs the other; a wrong fact it cannot
    know), where at the start every implicit reward is 0 and no pair is ranked; its margin over the reference's
    grew, and the metrics are logged per step."""
    surface = tmp_path / "surface.jsonl"
    surface.write_text("".join(line + "\n" for line in (corpus / "preferences_test.jsonl").read_text().splitlines()
                               if json.loads(line)["kind"] in ("rude", "wrong_language")))
    cfg = _config(sft_model, corpus, tmp_path, max_iters=40, lr=1e-2, beta=0.1, eval_interval=40,
                  checkpoint_interval=40, val_data=[str(surface)])
    result = dpo(cfg)
    assert result["reference"] == "computed" and result["train_pairs"] == 75 and result["val_pairs"] >= 8
    assert result["val/accuracy"] >= 0.8, result
    assert result["val/margins"] > 0.5, result  # beta * (policy margin - reference margin), mean
    assert result["val_loss"] < 0.693 - 0.1  # -log sigma(0) at the start
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "rewards/margins" in r]
    assert len(steps) == 40 and all(k in steps[0] for k in ("rewards/chosen", "rewards/rejected", "kl",
                                                            "rewards/accuracy"))
    assert steps[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)  # policy == reference at step 1
    # the saved adapter loads (ours) and scores as the trained policy did
    model, tokenizer = load_adapted(sft_model, tmp_path / "adapter")
    ref = load_file(str(tmp_path / "reference_logps.safetensors"))
    objective = PreferenceObjective(sft_model, cfg.method_config(), tokenizer, read_splits(cfg), ref_cache=tmp_path
                                    / "reference_logps.safetensors", max_len=128)
    objective.prepare_data(load_causal_lm(sft_model), torch.device("cpu"))
    assert objective.data_stats["reference"] == "cached" and torch.equal(objective.ref["val.chosen"],
                                                                         ref["val.chosen"])
    again = objective.evaluate(model)
    assert again["val/accuracy"] == pytest.approx(result["val/accuracy"], abs=1e-4)
    assert again["val/margins"] == pytest.approx(result["val/margins"], abs=1e-3)
    from peft import PeftModel  # peft loads it onto the exported model with the same outputs
    from transformers import AutoModelForCausalLM

    hf = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sft_model), tmp_path / "adapter").eval()
    x = torch.tensor([objective.examples["val"][0].prompt + objective.examples["val"][0].chosen])
    with torch.no_grad():
        assert torch.allclose(hf(input_ids=x).logits, model(x), atol=1e-4)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_loss_type_trains_and_its_loss_falls(sft_model, corpus, tmp_path, loss_type):
    """12 steps on 16 pairs; the loss over those same pairs (paired: same examples) falls."""
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join((corpus / "preferences_train.jsonl").read_text().splitlines()[:16]) + "\n")
    over = {"simpo": {"beta": 2.0, "lr": 1e-2}, "ipo": {"beta": 0.5, "lr": 5e-3}}.get(loss_type, {"lr": 5e-3})
    cfg = _config(sft_model, corpus, tmp_path / "run", data=[str(small)], val_data=[str(small)], max_iters=12,
                  loss_type=loss_type, eval_interval=12, checkpoint_interval=12, eval_iters=1, **over)
    records = read_splits(cfg)
    objective = PreferenceObjective(sft_model, cfg.method_config(), Tokenizer.load(sft_model), records, loss_type,
                                    cfg.loss_params(), 16, 128, tmp_path / "ref.safetensors")
    torch.manual_seed(0)
    before = objective.evaluate(objective.build(torch.device("cpu")))["val/loss"]
    result = dpo(cfg)
    assert result["val/loss"] < before - 0.01, (before, result["val/loss"])
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    if loss_type in ("simpo", "orpo"):
        assert "reference" not in result and not (tmp_path / "run" / "reference_logps.safetensors").exists()
    if loss_type == "kto":
        assert result["train_examples"] == 32 and result["train_desirable"] == 16


def test_resume_reuses_the_reference_cache_and_continues_exactly(sft_model, corpus, tmp_path):
    fixed = {"max_iters": 6, "lr_decay_iters": 6, "checkpoint_interval": 3, "eval_interval": 3, "lora":
             {"r": 4, "dropout": 0.1}}
    dpo(_config(sft_model, corpus, tmp_path / "whole", **fixed))
    first = dpo(_config(sft_model, corpus, tmp_path / "split", **{**fixed, "max_iters": 4}))
    cache = tmp_path / "split" / "reference_logps.safetensors"
    stamp = cache.stat().st_mtime_ns
    again = dpo(_config(sft_model, corpus, tmp_path / "split", **fixed), resume=True)
    assert first["reference"] == "computed" and again["reference"] == "cached" and cache.stat().st_mtime_ns == stamp
    whole, split = _losses(tmp_path / "whole"), _losses(tmp_path / "split")
    assert list(split) == list(range(1, 7))
    assert all(whole[i] == pytest.approx(split[i], abs=1e-6) for i in range(1, 7))
    assert json.loads((cache.with_suffix(".json")).read_text())["rows"] == {
        "train.chosen": 75, "train.rejected": 75, "val.chosen": 20, "val.rejected": 20}


def test_a_cache_for_other_data_or_another_model_is_refused(sft_model, corpus, tmp_path):
    cache = tmp_path / "ref.safetensors"
    dpo(_config(sft_model, corpus, tmp_path / "a", max_iters=1, ref_cache=str(cache)))
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join((corpus / "preferences_train.jsonl").read_text().splitlines()[:30]) + "\n")
    with pytest.raises(LmstackError, match=r"made for other data: the cache's data \w+ \(.*preferences_train.jsonl"
                                           r".*this run's data \w+ \(.*other.jsonl"):
        dpo(_config(sft_model, corpus, tmp_path / "b", max_iters=1, ref_cache=str(cache), data=[str(other)]))
    assert not (tmp_path / "b").exists()  # refused before anything was written
    torch.manual_seed(1)
    model, tokenizer = load_adapted(sft_model)
    with torch.no_grad():
        model.tok_emb.weight.mul_(1.01)  # another model, same config
    changed = save_model(model, tmp_path / "changed", tokenizer)
    with pytest.raises(LmstackError, match=r"made for other reference model.*\(.*sft/model\).*\(.*changed\)"):
        dpo(_config(changed, corpus, tmp_path / "c", max_iters=1, ref_cache=str(cache)))


def test_prefix_reference_is_the_base_and_full_fine_tuning_saves_a_model(sft_model, corpus, tmp_path):
    """A prefix changes the policy's outputs from the start, so the reference must be the base without it; full
    fine-tuning's reference is the starting model, and its artefact a model directory."""
    cfg = _config(sft_model, corpus, tmp_path / "prefix", max_iters=1, method="prefix", prefix={"n_virtual": 4},
                  max_len=None, precision="fp32")  # the reference is scored under the trainer's precision
    dpo(cfg)
    cached = load_file(str(tmp_path / "prefix" / "reference_logps.safetensors"))
    objective = PreferenceObjective(sft_model, cfg.method_config(), Tokenizer.load(sft_model), read_splits(cfg),
                                    ref_cache=tmp_path / "unused.safetensors")
    objective.prepare_data(load_causal_lm(sft_model), torch.device("cpu"))
    ex = objective.examples["val"]
    expected, _ = reference_logps(load_causal_lm(sft_model), [e.prompt for e in ex], [e.chosen for e in ex])
    assert torch.allclose(cached["val.chosen"], expected, atol=1e-5)
    result = dpo(_config(sft_model, corpus, tmp_path / "full", max_iters=3, method="full", lr=1e-4))
    assert result["trainable_fraction"] == 1.0 and (tmp_path / "full" / "model" / "model.safetensors").is_file()
    resumed = dpo(_config(sft_model, corpus, tmp_path / "full", max_iters=4, method="full", lr=1e-4), resume=True)
    assert resumed["reference"] == "cached" and resumed["iters"] == 4


def test_cli_runs_dpo_and_bad_input_is_one_line(sft_model, corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    main(["dpo", "--model", str(sft_model), "--data", str(corpus / "preferences_train.jsonl"),
          "--val_fraction", "0.2", "--out", str(out), "--max_iters", "2", "--batch_size", "4",
          "--loss_type", "ipo", "--max_len", "128", "--eval_iters", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["loss_type"] == "ipo" and result["val_pairs"] == 15 and (out / "adapter").is_dir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "same", "rejected": "same"}) + "\n")
    with pytest.raises(SystemExit) as stop:
        main(["dpo", "--model", str(sft_model), "--data", str(bad), "--out", str(tmp_path / "x")])
    assert stop.value.code != 0
    assert "bad.jsonl:1" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_rpo_adds_alpha_times_the_chosen_answers_nll(sft_model, corpus, tmp_path):
    """RPO (Pang et al. 2024): loss = DPO loss + alpha * mean_i(-log pi(chosen_i) / |chosen_i|), on the same batch."""
    cfg = _config(sft_model, corpus, tmp_path / "run")
    records = read_splits(cfg)
    plain, rpo = (PreferenceObjective(sft_model, cfg.method_config(), Tokenizer.load(sft_model), records, "sigmoid",
                                      dataclasses.replace(cfg.loss_params(), rpo_alpha=alpha), 8, 128,
                                      tmp_path / "ref.safetensors") for alpha in (0.0, 0.5))
    torch.manual_seed(0)
    model = plain.build(torch.device("cpu"))
    rpo.build(torch.device("cpu"))  # reads the same cache
    batch = plain.batch("val", torch.Generator().manual_seed(0))
    with torch.no_grad():
        (a, _), (b, metrics) = plain.loss(model, batch), rpo.loss(model, batch)
        ex = [plain.examples["val"][i] for i in batch.idx]
        nll = torch.stack([-token_logprobs(model, [e.prompt], [e.chosen])[0].mean() for e in ex]).mean()
    assert torch.allclose(metrics["nll"], nll, atol=1e-5)
    assert torch.allclose(b, a + 0.5 * nll, atol=1e-5)


def test_an_earlier_run_is_kept_unless_resumed_or_overwritten(sft_model, corpus, tmp_path):
    """dpo / ppo / grpo / train-reward refuse an OUT holding a checkpoint before reading or writing anything."""
    state = tmp_path / "run" / "checkpoint" / "trainer_state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"earlier")
    with pytest.raises(LmstackError, match="holds an earlier run's checkpoint"):
        dpo(_config(sft_model, corpus, tmp_path / "run"))
    with pytest.raises(LmstackError, match="holds an earlier run's checkpoint"):
        grpo(build(GRPOConfig, {"model": str(sft_model), "out": str(tmp_path / "run")}))
    with pytest.raises(LmstackError, match="give one of them"):
        dpo(_config(sft_model, corpus, tmp_path / "run"), resume=True, overwrite=True)
    assert state.read_bytes() == b"earlier"


def test_a_mixture_of_experts_policy_trains_with_its_router_losses(sft_model, corpus, tmp_path):
    """DPO on an MoE policy adds router_aux_coef * L_bal + router_z_coef * L_z of the policy's forward, over the
    real tokens only (as pretraining and SFT do); with both coefficients 0 the loss is the DPO loss alone."""
    tokenizer = Tokenizer.load(sft_model)
    torch.manual_seed(0)
    moe_model = build_model(preset("llama-moe-tiny", vocab_size=tokenizer.vocab_size, block_size=160, n_layer=2,
                                   router_aux_coef=0.5, router_z_coef=0.25))
    base = save_model(moe_model, tmp_path / "moe", tokenizer)
    cfg = _config(base, corpus, tmp_path / "run", method="full")
    objective = PreferenceObjective(base, cfg.method_config(), tokenizer, read_splits(cfg), "sigmoid",
                                    cfg.loss_params(), 8, 128, tmp_path / "ref.safetensors")
    model = objective.build(torch.device("cpu")).train()
    batch = objective.batch("train", torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(1)
        with_router, metrics = objective.loss(model, batch)
        for layer in moe.moe_layers(model):
            layer.aux_coef = layer.z_coef = 0.0
        torch.manual_seed(1)
        alone, _ = objective.loss(model, batch)
    assert {"moe_balance", "moe_z", "moe_load_max"} <= set(metrics)
    assert float(with_router - alone) == pytest.approx(0.5 * float(metrics["moe_balance"])
                                                       + 0.25 * float(metrics["moe_z"]), rel=1e-4)
