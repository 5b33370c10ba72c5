"""Rollouts for PPO and GRPO: sample answers to prompts with the project's KV-cached decoder, then read the
log-probabilities of the sampled tokens under a model by teacher forcing (one forward per batch).

A rollout is laid out so one forward reads it, as the decoder read it: row i is left padding, prompt i, its
completion, right padding. The completions all start at column P (the longest prompt), so every per-token
quantity (log-probs, values, rewards, advantages) is a [B, N] tensor over completion columns with a mask:

    ids      [B, P + N]   positions / key_mask as ``generate.decode`` uses them (real tokens only)
    mask     [B, N]       1 for completion tokens: the sampled tokens up to and including the turn end
    logp_t = log pi(ids[:, P + t] | ids[:, :P + t])   read from the logits at column P + t - 1

A completion ends at the first chat turn-end id (``ChatFormat.end_ids``: the template's end of turn and eos) and
includes it, as ``align.data.answer_ids`` does for preference answers, or after ``max_new_tokens``. Sampling
draws from a generator seeded per rollout (``GenerationConfig.seed``), so a resumed run samples the same text.

``lmstack.model.scoring`` computes the same log-probabilities row by row; here the policy's loss needs the
logits' entropy (and PPO the value head's hidden states) from the same forward, and the old and new policies
must be scored by the very same computation so the first importance ratio is exactly 1.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode


@dataclass
class Rollout:
    """Prompts and sampled completions as one left-padded batch (see the module docstring)."""
    ids: torch.Tensor  # [B, P + N] long
    positions: torch.Tensor  # [B, P + N]
    key_mask: torch.Tensor  # [B, P + N] bool: True where a real token sits
    mask: torch.Tensor  # [B, N] float: 1 on completion tokens
    completions: list[list[int]]  # the sampled ids of each row, to the turn end (included) or the budget

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"ids": self.ids, "positions": self.positions, "key_mask": self.key_mask, "mask": self.mask}


def sample(model: nn.Module, prompts: list[list[int]], config: GenerationConfig, end_ids: Collection[int],
           pad_id: int = 0) -> Rollout:
    """Sample (or, without ``config.do_sample``, greedily decode) one completion per prompt with ``decode``; rows
    stop at their first id in ``end_ids``, decoding stops once every row has."""
    ends = torch.tensor(sorted(end_ids), dtype=torch.long)
    steps: list[torch.Tensor] = []
    done = torch.zeros(len(prompts), dtype=torch.bool)
    eos = min(end_ids) if end_ids else None
    for token in decode(model, prompts, config, eos):
        token = token.cpu()
        steps.append(token)
        done |= torch.isin(token, ends)
        if bool(done.all()):
            break
    tokens = torch.stack(steps, dim=1)  # [B, n]
    completions = []
    for row in tokens.tolist():
        end = next((i for i, t in enumerate(row) if t in end_ids), len(row) - 1)
        completions.append(row[:end + 1])
    return layout(prompts, completions, pad_id)


def layout(prompts: list[list[int]], completions: list[list[int]], pad_id: int = 0) -> Rollout:
    """Prompts (left-padded to P) followed by their completions (right-padded to N) as one batch."""
    P, N, B = max(map(len, prompts)), max(map(len, completions)), len(prompts)
    ids = torch.full((B, P + N), pad_id, dtype=torch.long)
    mask = torch.zeros(B, N)
    for row, (p, c) in enumerate(zip(prompts, completions)):
        ids[row, P - len(p):P] = torch.tensor(p)
        ids[row, P:P + len(c)] = torch.tensor(c)
        mask[row, :len(c)] = 1.0
    pad = torch.tensor([P - len(p) for p in prompts])[:, None]
    columns = torch.arange(P + N)
    return Rollout(ids, (columns - pad).clamp(min=0), columns >= pad, mask, completions)


def completion_logits(logits: torch.Tensor, n: int) -> torch.Tensor:
    """The logits [B, N, V] that predict the last ``n`` columns (the completion) of a [B, P + N, V] forward."""
    return logits[:, -n - 1:-1]


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position, in fp32: [B, N]."""
    return torch.gather(F.log_softmax(logits.float(), dim=-1), -1, targets[..., None]).squeeze(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) per position, in fp32: [B, N]."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def completion_logprobs(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(completion token | everything before it) [B, N] under a causal LM ``model`` (called as
    ``model(idx, None, positions, key_mask)``), and the logits [B, N, V] they came from. Differentiable: wrap
    it in ``torch.no_grad()`` for the old policy and the reference."""
    n = batch["mask"].size(1)
    logits = completion_logits(model(batch["ids"], None, batch["positions"], batch["key_mask"]), n)
    return gather_logprobs(logits, batch["ids"][:, -n:]), logits


def real_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, P + N] bool: the real tokens of a rollout batch (its prompt, its completion to the turn end), not the
    left padding before the prompt nor the right padding after a short completion."""
    real = batch["key_mask"].bool().clone()
    real[:, -batch["mask"].size(1):] &= batch["mask"].bool()
    return real


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1 (over everything, or along ``dim``)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def rows(batch: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows ``index`` of every [B, ...] tensor of ``batch``."""
    return {k: v[index] for k, v in batch.items()}

