"""PPO as in InstructGPT (Ouyang et al. 2022, arXiv:2203.02155): the policy samples answers, a reward scores each
answer at its last token, a per-token KL penalty to the reference keeps it close (Ziegler et al. 2019,
arXiv:1909.08593; Stiennon et al. 2020), and several epochs of minibatches optimise the clipped surrogate of
Schulman et al. 2017 (arXiv:1707.06347) with a learned value baseline and GAE (Schulman et al. 2016).

Per rollout (``score``), for completion tokens t = 0..n-1 of answer i with reward R_i:

    KL_t  = log pi_old(a_t|s_t) - log pi_ref(a_t|s_t)
    r_t   = -beta KL_t  (+ R_i at t = n-1)
    delta_t = r_t + gamma V(s_{t+1}) - V(s_t)            (V after the last token: 0)
    A_t   = sum_l (gamma lambda)^l delta_{t+l}   (GAE),   returns G_t = A_t + V(s_t);   A whitened over the batch

Per minibatch (``loss``), with rho_t = pi(a_t|s_t) / pi_old(a_t|s_t) and masked means over completion tokens:

    L_pi = mean max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps))
    L_V  = 1/2 mean max((V_t - G_t)^2, (V_old,t + clip(V_t - V_old,t, -eps_v, eps_v) - G_t)^2)
    L    = L_pi + vf_coef L_V - ent_coef H(pi)

beta is fixed, or adaptive (Ziegler et al. 2019, sec. 2.2): e = clip(KL / KL_target - 1, -0.2, 0.2),
beta <- beta (1 + e n / horizon), with KL the rollout's mean summed KL per answer and n its answers.

The value head is a Linear on the policy's final (normed) hidden states (``Transformer.norm_f``'s output: one
forward gives logits and values, whatever adaptation method wraps the trunk), as trl's
``AutoModelForCausalLMWithValueHead``; InstructGPT used a separate value model initialised from the reward model,
which doubles the trained weights and forwards. The head trains fully (it is saved in checkpoints and beside the
artefact as ``value_head.safetensors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lmstack.adapt.objective import AdaptedPolicy
from lmstack.align.on_policy import OnPolicy
from lmstack.align.rollout import Rollout, completion_logits, entropy, gather_logprobs, masked_mean
from lmstack.io import atomic_path
from lmstack.model.hf import load_causal_lm
from lmstack.model.transformer import Transformer
from lmstack.train.objective import Objective

VALUE_HEAD = "value_head.safetensors"


class PolicyWithValue(nn.Module):
    """A causal LM (with its adaptation method applied) and a value head on its final hidden states."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy
        self.trunk = next(m for m in policy.modules() if isinstance(m, Transformer))
        self.value = nn.Linear(self.trunk.config.n_embd, 1)
        nn.init.zeros_(self.value.weight)  # V = 0 at the start: the first advantages are the discounted rewards
        nn.init.zeros_(self.value.bias)

    @property
    def config(self):
        return self.policy.config

    def forward(self, idx: torch.Tensor, cache=None, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, T, V] and values [B, T] of one forward."""
        hidden = []
        hook = self.trunk.norm_f.register_forward_hook(lambda module, args, out: hidden.append(out))
        try:
            logits = self.policy(idx, cache, positions, key_mask)
        finally:
            hook.remove()
        return logits, self.value(hidden[-1].float()).squeeze(-1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns [B, N] of per-token ``rewards`` under ``values`` (Schulman
    et al. 2016, arXiv:1506.02438): delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lambda A_{t+1},
    G_t = A_t + V_t; positions past an answer's end (``mask`` 0) count as terminal (V = r = 0 there)."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    N = rewards.size(1)
    for t in reversed(range(N)):
        next_value = values[:, t + 1] if t + 1 < N else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries (population variance); 0 elsewhere."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def token_rewards(kl: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """r_t = -beta KL_t on every completion token, plus the answer's score on its last token: [B, N]."""
    rewards = -beta * kl * mask
    last = mask.sum(1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def ppo_losses(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor,
               old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float,
               clip_value: float) -> dict[str, torch.Tensor]:
    """The clipped surrogate ``policy`` loss, the clipped ``value`` loss (see the module docstring), the fraction
    of tokens whose ratio was clipped, and the value error mean (V - G)^2."""
    ratio = torch.exp(logp - old_logp)
    policy = masked_mean(torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)), mask)
    clipped = old_values + (values - old_values).clamp(-clip_value, clip_value)
    value = 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)
    return {"policy": policy, "value": value,
            "clip_frac": masked_mean(((ratio - 1).abs() > clip).float(), mask),
            "value_error": masked_mean((values - returns) ** 2, mask)}


@dataclass
class KLController:
    """The KL coefficient beta: fixed, or (with ``target``) adapted as Ziegler et al. 2019 do."""
    beta: float = 0.05
    target: float | None = None  # KL per answer (nats) to hold; None: beta stays fixed
    horizon: int = 10000  # answers over which beta moves by e

    def update(self, kl: float, n: int) -> None:
        """After a rollout of ``n`` answers whose mean KL was ``kl``."""
        if self.target is not None:
            error = min(max(kl / self.target - 1, -0.2), 0.2)
            self.beta *= 1 + error * n / self.horizon


class PPO(OnPolicy):
    """PPO on ``records`` with ``reward`` (``OnPolicy`` for the sampling side); ``gamma``, ``lam``: GAE;
    ``clip`` / ``clip_value``: eps and eps_v; ``vf_coef``, ``ent_coef``: the loss weights; ``kl``: the
    controller of beta; ``whiten_advantages``: normalise A over each rollout."""

    stage = "PPO"

    def __init__(self, base: Path, method, tokenizer, records, reward, generation, rollout_prompts: int,
                 epochs: int, batch_size: int, max_len: int | None = None, bf16: bool = False, *,
                 gamma: float = 1.0, lam: float = 0.95, clip: float = 0.2, clip_value: float = 0.2,
                 vf_coef: float = 0.1, ent_coef: float = 0.0, kl: KLController | None = None,
                 whiten_advantages: bool = True):
        self.init_on_policy(base, method, tokenizer, records, reward, generation, rollout_prompts, epochs,
                            batch_size, max_len, bf16)
        self.gamma, self.lam, self.clip, self.clip_value = gamma, lam, clip, clip_value
        self.vf_coef, self.ent_coef, self.whiten_advantages = vf_coef, ent_coef, whiten_advantages
        self.kl = kl or KLController()

    def policy(self, model: nn.Module) -> nn.Module:
        return model.policy

    def prepare(self, model: nn.Module) -> nn.Module:
        return super().prepare(model if isinstance(model, PolicyWithValue) else PolicyWithValue(model))

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """Completion log-probs [B, N], values [B, N] and logits [B, N, V] of one forward."""
        n = batch["mask"].size(1)
        logits, values = model(batch["ids"], None, batch["positions"], batch["key_mask"])
        logits = completion_logits(logits, n)
        return gather_logprobs(logits, batch["ids"][:, -n:]), completion_logits(values[..., None], n)[..., 0], logits

    def score(self, rollout: Rollout, rewards: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        batch, mask = rollout.tensors(), rollout.mask
        with torch.no_grad(), self.autocast():
            old_logp, old_values = self.chunked(lambda b: self.forward(self.model, b)[:2], batch)
        ref_logp = self.reference_logprobs(batch)
        kl = (old_logp - ref_logp) * mask
        beta = self.kl.beta
        advantages, returns = gae(token_rewards(kl, rewards, mask, beta), old_values, mask, self.gamma, self.lam)
        if self.whiten_advantages:
            advantages = whiten(advantages, mask)
        kl_answer = float(kl.sum(1).mean())
        self.kl.update(kl_answer, len(rewards))
        data = {**batch, "old_logp": old_logp, "old_values": old_values * mask, "advantages": advantages,
                "returns": returns}
        stats = {"reward": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
                 "kl": kl_answer, "beta": beta, "answer_tokens": float(mask.sum(1).mean())}
        return data, stats

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        logp, values, logits = self.forward(model, batch)
        mask = batch["mask"]
        parts = ppo_losses(logp, batch["old_logp"], batch["advantages"], values, batch["old_values"],
                           batch["returns"], mask, self.clip, self.clip_value)
        ent = masked_mean(entropy(logits), mask)
        loss = parts["policy"] + self.vf_coef * parts["value"] - self.ent_coef * ent
        metrics = {"policy_loss": parts["policy"].detach(), "value_loss": parts["value"].detach(),
                   "clip_frac": parts["clip_frac"], "value_error": parts["value_error"].detach(),
                   "entropy": ent.detach(), **batch["stats"]}
        return self.with_router_losses(model, batch, loss, metrics)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "beta": self.kl.beta}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.kl.beta = state.get("beta", self.kl.beta)

    def write_state(self, model: nn.Module, folder: Path) -> None:
        if self.peft:
            Objective.write_state(self, model, folder)  # the method's trainable parameters and the value head
        else:
            AdaptedPolicy.write_state(self, model.policy, folder)
            save_file({k: v.detach().contiguous() for k, v in model.value.state_dict().items()},
                      str(folder / VALUE_HEAD))

    def restore(self, folder: Path, device: torch.device) -> nn.Module:
        if self.peft:
            return Objective.restore(self, folder, device)
        model = self.prepare(self.method.apply(load_causal_lm(folder, device=device), self.tokenizer))
        model.value.load_state_dict(load_file(str(folder / VALUE_HEAD), device=str(device)))
        return model

    def save(self, model: nn.Module, out: Path) -> Path:
        saved = AdaptedPolicy.save(self, model.policy, out)
        with atomic_path(out / VALUE_HEAD) as tmp:
            save_file({k: v.detach().contiguous() for k, v in model.value.state_dict().items()}, str(tmp))
        return saved
