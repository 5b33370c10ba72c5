"""PPO (InstructGPT): GAE, the per-token KL reward, the clipped losses and the adaptive KL controller against
their formulas; the value head; reward rising on a tiny model; exact resume; the command and its bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lmstack.adapt.methods import Full
from lmstack.align.ppo import PPO, KLController, PolicyWithValue, gae, ppo_losses, token_rewards, whiten
from lmstack.align.rl_commands import PPOConfig, ppo
from lmstack.cli import main
from lmstack.config import build
from lmstack.generate.config import GenerationConfig
from lmstack.model.hf import load_causal_lm
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.config import LoopConfig
from lmstack.train.trainer import Callback, Trainer


def _gae_by_hand(r, v, gamma, lam):
    """The textbook recursion on one answer's python lists (V after the last token: 0)."""
    adv, running = [0.0] * len(r), 0.0
    for t in reversed(range(len(r))):
        delta = r[t] + gamma * (v[t + 1] if t + 1 < len(r) else 0.0) - v[t]
        running = delta + gamma * lam * running
        adv[t] = running
    return adv, [a + x for a, x in zip(adv, v)]


def test_gae_equals_a_hand_computed_case():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 7.0], [0.5, -1.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 1.0, 1.5, 9.0], [0.2, 0.4, 5.0, 5.0]])
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0 by hand: delta = (1.4, 2.35, 1.5); A2 = 1.5, A1 = 2.35 + .72 * 1.5, A0 = 1.4 + .72 * A1
    assert adv[0].tolist() == pytest.approx([1.4 + 0.72 * 3.43, 3.43, 1.5, 0.0])
    assert ret[0].tolist() == pytest.approx([0.5 + 1.4 + 0.72 * 3.43, 4.43, 3.0, 0.0])
    for row, n in ((0, 3), (1, 2)):
        want_adv, want_ret = _gae_by_hand(rewards[row, :n].tolist(), values[row, :n].tolist(), 0.9, 0.8)
        assert adv[row, :n].tolist() == pytest.approx(want_adv) and ret[row, :n].tolist() == pytest.approx(want_ret)
        assert adv[row, n:].abs().sum() == 0 and ret[row, n:].abs().sum() == 0
    # gamma = lambda = 1, V = 0: the advantage is the reward still to come
    adv, _ = gae(rewards, torch.zeros_like(values), mask, 1.0, 1.0)
    assert adv[0, :3].tolist() == pytest.approx([6.0, 5.0, 3.0])


def test_token_rewards_are_the_kl_penalty_plus_the_score_at_the_last_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask = torch.tensor([[1.0, 1, 1], [1, 0, 0]])
    r = token_rewards(kl, torch.tensor([2.0, -1.0]), mask, beta=0.5)
    assert torch.allclose(r, torch.tensor([[-0.05, -0.1, -0.15 + 2.0], [-0.2 - 1.0, 0.0, 0.0]]))


def test_whiten_gives_zero_mean_unit_variance_on_the_mask():
    x, mask = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]]), torch.tensor([[1.0, 1, 1], [1, 0, 0]])
    w = whiten(x, mask)
    assert w[mask.bool()].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert (w[mask.bool()] ** 2).mean().item() == pytest.approx(1.0, abs=1e-5)
    assert w[~mask.bool()].abs().sum() == 0


def test_clipped_losses_equal_the_formula():
    g = torch.Generator().manual_seed(0)
    logp, old_logp = -torch.rand(3, 4, generator=g), -torch.rand(3, 4, generator=g)
    adv, ret = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    values, old_values = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    eps, eps_v = 0.2, 0.3
    out = ppo_losses(logp, old_logp, adv, values, old_values, ret, mask, eps, eps_v)
    pol, val, clipped, err, n = 0.0, 0.0, 0, 0.0, 0
    for i in range(3):
        for t in range(4):
            if not mask[i, t]:
                continue
            rho, a = math.exp(logp[i, t] - old_logp[i, t]), float(adv[i, t])
            pol += max(-a * rho, -a * min(max(rho, 1 - eps), 1 + eps))
            v, vo, G = float(values[i, t]), float(old_values[i, t]), float(ret[i, t])
            vc = vo + min(max(v - vo, -eps_v), eps_v)
            val += 0.5 * max((v - G) ** 2, (vc - G) ** 2)
            clipped += abs(rho - 1) > eps
            err += (v - G) ** 2
            n += 1
    assert out["policy"].item() == pytest.approx(pol / n, abs=1e-6)
    assert out["value"].item() == pytest.approx(val / n, abs=1e-6)
    assert out["clip_frac"].item() == pytest.approx(clipped / n)
    assert out["value_error"].item() == pytest.approx(err / n, abs=1e-6)


def test_adaptive_kl_controller_follows_ziegler_and_fixed_stays():
    c = KLController(beta=0.1, target=6.0, horizon=100)
    c.update(9.0, 10)  # error 0.5 clipped to 0.2: beta * (1 + 0.2 * 10 / 100)
    assert c.beta == pytest.approx(0.1 * 1.02)
    c.update(4.5, 20)  # error -0.25 clipped to -0.2
    assert c.beta == pytest.approx(0.1 * 1.02 * (1 - 0.2 * 20 / 100))
    c.update(6.6, 50)  # error 0.1
    assert c.beta == pytest.approx(0.1 * 1.02 * 0.96 * (1 + 0.1 * 0.5))
    fixed = KLController(beta=0.1)
    fixed.update(100.0, 10)
    assert fixed.beta == 0.1


def test_value_head_reads_the_final_hidden_states_in_the_same_forward(rl_base):
    model = load_causal_lm(rl_base)
    wrapped = PolicyWithValue(model)
    torch.nn.init.normal_(wrapped.value.weight)
    idx = torch.randint(0, model.config.vocab_size, (2, 7))
    logits, values = wrapped(idx)
    assert torch.equal(logits, model(idx))
    hidden = model.hidden_states(model.tok_emb(idx))
    assert torch.allclose(values, wrapped.value(hidden).squeeze(-1))


class Record(Callback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, trainer, loss, metrics):
        self.steps.append({k: float(v) for k, v in metrics.items()})


def count_e(records, replies):
    return [r.count("e") / 4 for r in replies]


def test_ppo_raises_the_reward_of_a_tiny_model(rl_base, rl_records):
    tokenizer = Tokenizer.load(rl_base)
    objective = PPO(rl_base, Full(), tokenizer, rl_records, count_e, GenerationConfig(max_new_tokens=8, do_sample=True),
                    rollout_prompts=16, epochs=2, batch_size=8, kl=KLController(0.05))
    cfg = LoopConfig(batch_size=8, max_iters=40, lr=3e-3, min_lr=3e-4, warmup_iters=0, weight_decay=0,
                     precision="fp32", seed=0, device="cpu")
    record = Record()
    Trainer(objective, cfg, None, callbacks=[record], progress=False).run()
    steps = record.steps
    assert steps[0]["clip_frac"] == 0.0  # the first minibatch is on-policy: every ratio is exactly 1
    first = sum(s["reward"] for s in steps[:8]) / 8
    last = sum(s["reward"] for s in steps[-8:]) / 8
    assert last > first + 0.2, (first, last)
    assert all(s["kl"] > -1e-6 for s in steps[4:]) and steps[-1]["kl"] > steps[0]["kl"]
    assert {"policy_loss", "value_loss", "value_error", "entropy", "beta", "clip_frac"} <= set(steps[0])


LOOP = {"batch_size": 8, "rollout_prompts": 16, "epochs": 2, "max_new_tokens": 6, "log_interval": 1,
        "warmup_iters": 0, "lr": 1e-2, "precision": "fp32", "device": "cpu", "eval_prompts": 4,
        "lora": {"r": 4}}


def _config(base, prompts, out, reward, **over) -> PPOConfig:
    return build(PPOConfig, {**LOOP, "model": str(base), "prompts": [str(prompts)], "out": str(out),
                             "reward": reward, **over})


def _reward_file(tmp_path, body: str = "return [r.count('e') / 4 for r in replies]"):
    path = tmp_path / "my_reward.py"
    path.write_text(f"def reward(prompts, replies, metas):\n    {body}\n")
    return f"{path}:reward"


def _losses(out) -> dict[int, float]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["iter"]: r["loss"] for r in lines if "loss" in r}


def test_resume_mid_rollout_equals_the_uninterrupted_run(rl_base, rl_prompt_file, tmp_path):
    reward = _reward_file(tmp_path)
    fixed = {"max_iters": 8, "lr_decay_iters": 8, "checkpoint_interval": 5, "kl_target": 0.5, "kl_horizon": 40}
    whole = ppo(_config(rl_base, rl_prompt_file, tmp_path / "whole", reward, **fixed))
    ppo(_config(rl_base, rl_prompt_file, tmp_path / "split", reward, **{**fixed, "max_iters": 5}))
    split = ppo(_config(rl_base, rl_prompt_file, tmp_path / "split", reward, **fixed), resume=True)
    a, b = _losses(tmp_path / "whole"), _losses(tmp_path / "split")
    assert list(b) == list(range(1, 9))
    assert all(a[i] == pytest.approx(b[i], abs=1e-6) for i in range(6, 9))  # step 5 stopped inside a rollout
    assert split["final_beta"] == pytest.approx(whole["final_beta"]) and whole["final_beta"] != 0.05
    for key in ("heldout_reward_before", "heldout_reward_after", "final_kl"):
        assert isinstance(whole[key], float)
    assert (tmp_path / "whole" / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "whole" / "value_head.safetensors").is_file()
    assert (tmp_path / "whole" / "reward_kl.png").stat().st_size > 0


def test_cli_ppo_and_a_reward_that_returns_nan(rl_base, rl_prompt_file, tmp_path, capsys):
    args = ["ppo", "--json", "--model", str(rl_base), "--prompts", str(rl_prompt_file), "--max_iters", "2",
            "--batch_size", "8", "--rollout_prompts", "8", "--epochs", "1", "--max_new_tokens", "4",
            "--eval_prompts", "2", "--precision", "fp32", "--device", "cpu"]
    main([*args, "--out", str(tmp_path / "ok"), "--reward", _reward_file(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    assert result["iters"] == 2 and result["method"] == "lora" and result["heldout_prompts"] == 2
    bad = _reward_file(tmp_path, "return [float('nan')] * len(replies)")
    with pytest.raises(SystemExit) as stop:
        main([*args, "--out", str(tmp_path / "bad"), "--reward", bad])
    err = capsys.readouterr().err.strip()
    assert stop.value.code != 0 and len(err.splitlines()) == 1
    assert "my_reward.py:reward" in err and "nan" in err and "prompts.jsonl:" in err
    assert not (tmp_path / "bad").exists()  # checked before anything was written


def test_full_fine_tuning_checkpoints_keep_the_value_head(rl_base, rl_records, tmp_path):
    objective = PPO(rl_base, Full(), Tokenizer.load(rl_base), rl_records, count_e,
                    GenerationConfig(max_new_tokens=4, do_sample=True), rollout_prompts=8, epochs=1, batch_size=8)
    model = objective.build(torch.device("cpu"))
    assert objective.reference is not None and not any(p.requires_grad for p in objective.reference.parameters())
    torch.nn.init.normal_(model.value.weight)
    with torch.no_grad():
        model.policy.lm_head.weight.add_(0.01)
    objective.write_state(model, tmp_path)
    restored = objective.restore(tmp_path, torch.device("cpu"))
    assert torch.equal(restored.value.weight, model.value.weight)
    saved, loaded = model.policy.state_dict(), restored.policy.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
