"""GRPO, group relative policy optimisation (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300): sample G answers
to each prompt, and let each answer's reward relative to its group be the advantage of all its tokens; no value
model.

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)          (std: the unbiased sample deviation, as trl)

    L = 1/G sum_i 1/|o_i| sum_t [ -min(rho_it A_i, clip(rho_it, 1 - eps_c, 1 + eps_c) A_i) + beta D_it ]
    rho_it = pi(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t)
    D_it  = exp(ref_it - logp_it) - (ref_it - logp_it) - 1         (the k3 estimator of KL(pi || pi_ref), >= 0)

(the paper's eq. 3: a mean over each answer's tokens, then over answers). With one epoch of one minibatch per
rollout rho = 1 and the gradient is the plain policy gradient; ``beta = 0`` skips the reference entirely. A group
whose answers all score the same teaches nothing (A = 0); the fraction of such groups is logged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lmstack.align.on_policy import OnPolicy
from lmstack.align.rollout import Rollout, completion_logprobs, masked_mean
from lmstack.errors import LmstackError


def group_advantages(rewards: torch.Tensor, group: int, eps: float = 1e-4) -> torch.Tensor:
    """(r_i - group mean) / (group std + eps) for rewards [B] laid out as consecutive groups of ``group``."""
    r = rewards.view(-1, group)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)).view(-1)


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """exp(ref - logp) - (ref - logp) - 1 per token: an unbiased, non-negative estimate of KL(pi || pi_ref)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, clip: float, beta: float) -> dict[str, torch.Tensor]:
    """The GRPO ``loss`` (see the module docstring) for per-token [B, N] log-probs and per-answer advantages [B],
    with the mean ``kl`` (k3) and the fraction of tokens whose ratio was clipped."""
    ratio = torch.exp(logp - old_logp)
    A = advantages[:, None]
    per_token = -torch.min(ratio * A, ratio.clamp(1 - clip, 1 + clip) * A)
    kl = k3(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    if beta:
        per_token = per_token + beta * kl
    return {"loss": masked_mean(per_token, mask, dim=1).mean(), "kl": masked_mean(kl.detach(), mask),
            "clip_frac": masked_mean(((ratio - 1).abs() > clip).float(), mask)}


class GRPO(OnPolicy):
    """GRPO on ``records`` with ``reward``: ``group`` answers to each of ``rollout_prompts`` prompts per rollout;
    ``clip``: eps_c; ``beta``: the weight of the k3 KL to the reference (0: no reference); ``eps``: in A's
    denominator (``OnPolicy`` for the sampling side)."""

    stage = "GRPO"

    def __init__(self, base: Path, method, tokenizer, records, reward, generation, rollout_prompts: int,
                 epochs: int, batch_size: int, max_len: int | None = None, bf16: bool = False, *,
                 group: int = 8, clip: float = 0.2, beta: float = 0.04, eps: float = 1e-4):
        if group < 2:
            raise LmstackError(f"GRPO needs at least 2 answers per prompt to compare, got group {group}")
        self.group, self.clip, self.beta, self.eps = group, clip, beta, eps
        self.needs_reference = bool(beta)
        self.init_on_policy(base, method, tokenizer, records, reward, generation, rollout_prompts, epochs,
                            batch_size, max_len, bf16)

    def score(self, rollout: Rollout, rewards: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        batch = rollout.tensors()
        with torch.no_grad(), self.autocast():
            old_logp = self.chunked(lambda b: completion_logprobs(self.model, b)[0], batch)
        data = {**batch, "old_logp": old_logp, "advantages": group_advantages(rewards, self.group, self.eps)}
        stats = {}
        if self.beta:
            data["ref_logp"] = self.reference_logprobs(batch)
            stats["kl"] = float(masked_mean(k3(old_logp, data["ref_logp"]), rollout.mask))
        by_group = rewards.view(-1, self.group)
        stats |= {"reward": float(rewards.mean()), "reward_std": float(rewards.std()),
                 "zero_std_frac": float((by_group.std(1) == 0).float().mean()),
                 "answer_tokens": float(rollout.mask.sum(1).mean())}
        return data, stats

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        logp, _ = completion_logprobs(model, batch)
        parts = grpo_loss(logp, batch["old_logp"], batch.get("ref_logp"), batch["advantages"], batch["mask"],
                          self.clip, self.beta)
        metrics = {**batch["stats"], "clip_frac": parts["clip_frac"]}
        if self.beta:
            metrics["kl"] = parts["kl"]
        return self.with_router_losses(model, batch, parts["loss"], metrics)
