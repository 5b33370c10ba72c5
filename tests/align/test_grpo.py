"""GRPO: group advantages, the k3 KL and the clipped objective against their formulas; the LoRA reference is the
base exactly; reward rising on a tiny model; the reward functions (rules, a Python file, a reward model) and
their bad output; the command."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from lmstack.adapt.lora import LoRA, adapters_disabled, lora_layers
from lmstack.adapt.methods import Full
from lmstack.align.grpo import GRPO, group_advantages, grpo_loss, k3
from lmstack.align.rewards import answer_rule, checked, format_rule, load_reward, rule_reward, scorer_reward
from lmstack.align.rollout import completion_logprobs, layout, real_tokens, sample
from lmstack.cli import main
from lmstack.data.preferences import PromptRecord
from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.model import build_model, moe, preset
from lmstack.model.hf import load_causal_lm, save_model
from lmstack.model.scoring import token_logprobs
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.config import LoopConfig
from lmstack.train.trainer import Callback, Trainer


def test_group_advantages_equal_the_formula():
    rewards = torch.tensor([1.0, 0.0, 0.0, 2.0, 3.0, 3.0, 3.0, 3.0])
    adv = group_advantages(rewards, group=4, eps=1e-4)
    for g in range(2):
        r = rewards[4 * g:4 * g + 4].tolist()
        mean, std = statistics.mean(r), statistics.stdev(r)
        assert adv[4 * g:4 * g + 4].tolist() == pytest.approx([(x - mean) / (std + 1e-4) for x in r], abs=1e-6)
    assert adv[4:].abs().sum() == 0  # a group that scored alike teaches nothing


def test_k3_and_the_clipped_group_objective_equal_the_formula():
    g = torch.Generator().manual_seed(1)
    logp, old_logp, ref = (-torch.rand(4, 3, generator=g) for _ in range(3))
    adv = torch.tensor([1.5, -0.5, 0.0, -2.0])
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    eps, beta = 0.1, 0.04
    out = grpo_loss(logp, old_logp, ref, adv, mask, eps, beta)
    total, kl_sum, clipped, n = 0.0, 0.0, 0, 0
    for i in range(4):
        per = []
        for t in range(int(mask[i].sum())):
            rho, a = math.exp(logp[i, t] - old_logp[i, t]), float(adv[i])
            d = float(ref[i, t] - logp[i, t])
            kl = math.exp(d) - d - 1
            per.append(-min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a) + beta * kl)
            kl_sum, clipped, n = kl_sum + kl, clipped + (abs(rho - 1) > eps), n + 1
        total += sum(per) / len(per)
    assert out["loss"].item() == pytest.approx(total / 4, abs=1e-6)
    assert out["kl"].item() == pytest.approx(kl_sum / n, abs=1e-6)
    assert out["clip_frac"].item() == pytest.approx(clipped / n)
    assert (k3(logp, ref) >= 0).all() and k3(logp, logp).abs().max() == 0


def test_adapters_disabled_is_the_base_exactly(rl_base):
    base = load_causal_lm(rl_base)
    policy = LoRA(r=4).apply(load_causal_lm(rl_base))
    for layer in lora_layers(policy):
        for b in layer.lora_B.values():
            torch.nn.init.normal_(b.weight)
    idx = torch.randint(0, base.config.vocab_size, (2, 9))
    with torch.no_grad():
        assert not torch.allclose(policy(idx), base(idx))
        with adapters_disabled(policy):
            assert torch.equal(policy(idx), base(idx))
        assert not torch.allclose(policy(idx), base(idx))  # switched back on


def test_rollout_samples_to_the_turn_end_and_scores_as_scoring_does(rl_base, rl_records):
    model, tokenizer = load_causal_lm(rl_base), Tokenizer.load(rl_base)
    chat = ChatFormat(tokenizer)
    prompts = [chat.encode(r.prompt) for r in rl_records[:4]]
    config = GenerationConfig(max_new_tokens=6, do_sample=True, seed=3)
    a, b = sample(model, prompts, config, chat.end_ids), sample(model, prompts, config, chat.end_ids)
    assert a.completions == b.completions and torch.equal(a.ids, b.ids)  # seeded: a resumed run samples the same
    assert all(len(c) <= 6 and all(t not in chat.end_ids for t in c[:-1]) for c in a.completions)
    # an answer that reached the turn end keeps it; the mask covers exactly the completion
    end = min(chat.end_ids)
    forced = layout(prompts[:2], [[5, 6, end], [7]])
    assert forced.mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    with torch.no_grad():
        logp, _ = completion_logprobs(model, forced.tensors())
        want = token_logprobs(model, prompts[:2], [[5, 6, end], [7]])
    assert torch.allclose(logp[0], want[0], atol=1e-5) and torch.allclose(logp[1, :1], want[1], atol=1e-5)


class Record(Callback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, trainer, loss, metrics):
        self.steps.append({k: float(v) for k, v in metrics.items()})


def test_grpo_raises_the_reward_of_a_tiny_model(rl_base, rl_records):
    reward = checked(lambda records, replies: [r.count("e") / 4 for r in replies], "count_e")
    objective = GRPO(rl_base, Full(), Tokenizer.load(rl_base), rl_records, reward,
                     GenerationConfig(max_new_tokens=8, do_sample=True), rollout_prompts=2, epochs=1, batch_size=8,
                     group=8, beta=0.04)
    cfg = LoopConfig(batch_size=8, max_iters=40, lr=3e-3, min_lr=3e-4, warmup_iters=0, weight_decay=0,
                     precision="fp32", seed=0, device="cpu")
    record = Record()
    Trainer(objective, cfg, None, callbacks=[record], progress=False).run()
    steps = record.steps
    assert steps[0]["clip_frac"] == 0.0 and steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    first = sum(s["reward"] for s in steps[:8]) / 8
    last = sum(s["reward"] for s in steps[-8:]) / 8
    assert last > first + 0.3, (first, last)
    assert steps[-1]["kl"] > 0 and {"reward_std", "zero_std_frac"} <= set(steps[0])


def _records(n=2):
    return [PromptRecord([{"role": "user", "content": "2 + 3?"}], f"p.jsonl:{i + 1}", {"answer": 5}) for i in range(n)]


def test_rule_rewards():
    assert answer_rule({"answer": 5}, "2 + 3 = 5") and not answer_rule({"answer": 5}, "5, no: 6")
    assert not answer_rule({}, "5") and answer_rule({"answer": "1,200"}, "It is 1200.")
    assert format_rule("Four.") and format_rule("四。") and not format_rule("") and not format_rule("ok <|im_end|>")
    assert rule_reward(["answer", "format"])(_records(3), ["5.", "5 it is", "six"]) == [2.0, 1.0, 0.0]
    fake_judge = lambda meta, reply: {"correct": "5" in reply, "right_language": True, "polite": "please" in reply,  # noqa: E731
                                      "chosen_kind": False}
    assert rule_reward(["correct", "polite"], fake_judge)(_records(), ["5 please", "4"]) == [2.0, 0.0]
    with pytest.raises(LmstackError, match="unknown; choose from"):
        rule_reward(["shiny"])


def test_reward_functions_that_raise_or_give_bad_values_are_one_clear_error(tmp_path):
    path = tmp_path / "rewards.py"
    path.write_text("def ok(prompts, replies, metas):\n    return [float(m['answer']) for m in metas]\n"
                    "def boom(prompts, replies, metas):\n"
                    "    if any('bad' in r for r in replies):\n        raise ValueError('no')\n    return [1.0]\n"
                    "def text(prompts, replies, metas):\n    return ['high'] * len(replies)\n"
                    "def inf(prompts, replies, metas):\n    return [1.0, float('inf')]\n")
    records = _records()
    assert load_reward(f"{path}:ok", None)(records, ["a", "b"]) == [5.0, 5.0]
    with pytest.raises(LmstackError, match=r"rewards.py:boom raised ValueError: no \(prompt p.jsonl:2\)"):
        load_reward(f"{path}:boom", None)(records, ["good", "bad"])
    with pytest.raises(LmstackError, match=r"rewards.py:text gave 'high' for the prompt at p.jsonl:1"):
        load_reward(f"{path}:text", None)(records, ["a", "b"])
    with pytest.raises(LmstackError, match=r"gave inf for the prompt at p.jsonl:2; expected a finite number"):
        load_reward(f"{path}:inf", None)(records, ["a", "b"])
    with pytest.raises(LmstackError, match="has no function 'missing'"):
        load_reward(f"{path}:missing", None)
    with pytest.raises(LmstackError, match="not found"):
        load_reward(f"{tmp_path}/nope.py:fn", None)
    assert load_reward("math:fsum", None) is not None  # package.module:function resolves too


class FakeScorer:
    """The RewardScorer interface: kind, tokenizer, score(prompts, replies)."""

    def __init__(self, kind, tokenizer):
        self.kind, self.tokenizer = kind, tokenizer

    def score(self, prompts, replies):
        return torch.tensor([float(len(r)) for r in replies])


def test_reward_model_scores_and_a_decoder_with_another_tokenizer_is_refused(rl_base):
    tokenizer = Tokenizer.load(rl_base)
    reward = scorer_reward(FakeScorer("decoder", tokenizer), tokenizer, "rm")
    assert reward(_records(), ["abc", "de"]) == [3.0, 2.0]
    other = Tokenizer.load(rl_base)
    other.backend.add_tokens(["zzz"])
    with pytest.raises(LmstackError, match="rm: this decoder reward model's tokenizer differs"):
        scorer_reward(FakeScorer("decoder", other), tokenizer, "rm")
    assert scorer_reward(FakeScorer("encoder", other), tokenizer, "rm")(_records(), ["a", "bb"]) == [1.0, 2.0]


def test_cli_grpo_trains_saves_and_evaluates(rl_base, rl_prompt_file, tmp_path, capsys):
    path = tmp_path / "r.py"
    path.write_text("def reward(prompts, replies, metas):\n    return [r.count('e') / 4 for r in replies]\n")
    main(["grpo", "--json", "--model", str(rl_base), "--prompts", str(rl_prompt_file), "--out", str(tmp_path / "run"),
          "--reward", f"{path}:reward", "--max_iters", "4", "--batch_size", "8", "--rollout_prompts", "2",
          "--group", "4", "--max_new_tokens", "4", "--eval_prompts", "2", "--log_interval", "1",
          "--precision", "fp32", "--device", "cpu", "--beta", "0.1"])
    result = json.loads(capsys.readouterr().out)
    assert result["iters"] == 4 and isinstance(result["heldout_reward_after"], float)
    assert result["final_kl"] >= 0 and result["heldout_prompts"] == 2
    run = tmp_path / "run"
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "reward_kl.png").stat().st_size > 0
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and all({"reward", "reward_std", "kl", "clip_frac", "zero_std_frac"} <= set(r)
                                    for r in logged)
    with pytest.raises(SystemExit) as stop:  # 2 prompts x 3 answers do not split into minibatches of 4
        main(["grpo", "--model", str(rl_base), "--prompts", str(rl_prompt_file), "--out", str(tmp_path / "bad"),
              "--reward", f"{path}:reward", "--batch_size", "4", "--rollout_prompts", "2", "--group", "3"])
    assert stop.value.code != 0 and "make it a multiple" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_an_moe_policy_adds_its_router_losses_over_the_rollouts_real_tokens(rl_base, rl_records, tmp_path):
    """GRPO (and PPO, the same hook) on a mixture-of-experts policy: loss = GRPO's + the routers' term of that
    forward over the rollout's real tokens (no left padding, no completion padding)."""
    tokenizer = Tokenizer.load(rl_base)
    torch.manual_seed(0)
    base = save_model(build_model(preset("llama-moe-tiny", vocab_size=tokenizer.vocab_size, block_size=64,
                                         n_layer=2, router_aux_coef=0.5, router_z_coef=0.25)),
                      tmp_path / "moe", tokenizer)
    reward = checked(lambda records, replies: [len(r) / 10 for r in replies], "length")
    objective = GRPO(base, Full(), tokenizer, rl_records, reward, GenerationConfig(max_new_tokens=6, do_sample=True,
                     seed=0), rollout_prompts=2, epochs=1, batch_size=4, group=2, beta=0.0)
    model = objective.build(torch.device("cpu")).train()
    batch = objective.batch("train", torch.Generator().manual_seed(0))
    with torch.no_grad():
        with_router, metrics = objective.loss(model, batch)
        for layer in moe.moe_layers(model):
            layer.aux_coef = layer.z_coef = 0.0
        alone, _ = objective.loss(model, batch)
    assert float(with_router - alone) == pytest.approx(0.5 * float(metrics["moe_balance"])
                                                       + 0.25 * float(metrics["moe_z"]), rel=1e-4)
    real = real_tokens(batch)
    assert int(real.sum()) == int(batch["key_mask"][:, :-batch["mask"].size(1)].sum() + batch["mask"].sum())
