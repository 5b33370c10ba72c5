"""Logits processors: small functions that reshape next-token scores [B, V] before a token is picked.

Each matches the ``transformers`` processor of the same name value for value, and ``process`` chains them
in the order ``transformers`` does: repetition penalty, min-new-tokens, then (sampling only) temperature,
top-k, top-p.
"""

from __future__ import annotations

import torch

from lmstack.generate.config import GenerationConfig


def temperature(scores: torch.Tensor, t: float) -> torch.Tensor:
    """softmax(z / T): T < 1 sharpens the distribution, T > 1 flattens it."""
    return scores / t


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest scores (ties with the k-th included); the rest become -inf."""
    kth = torch.topk(scores, min(k, scores.size(-1))).values[..., -1:]
    return scores.masked_fill(scores < kth, -float("inf"))


def top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2019): keep the smallest set of most probable tokens whose
    probabilities sum to at least p; the most probable token always stays."""
    ascending, order = torch.sort(scores, descending=False)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= 1 - p  # the low tail holding at most 1 - p of the mass
    drop[..., -1:] = False
    return scores.masked_fill(drop.scatter(-1, order, drop), -float("inf"))


def repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019) as transformers applies it: a score of a token already in the
    sequence (``seen`` [B, V] bool) is divided by ``penalty`` if positive, multiplied by it if negative."""
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalised, scores)


def suppress(scores: torch.Tensor, token: int) -> torch.Tensor:
    """Forbid one token (the eos token, until ``min_new_tokens`` have been made)."""
    scores = scores.clone()
    scores[..., token] = -float("inf")
    return scores


def seen_tokens(rows: list[list[int]], vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[B, V] bool: which tokens occur in each row (the state ``repetition_penalty`` reads)."""
    seen = torch.zeros(len(rows), vocab_size, dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        seen[i, torch.tensor(row, dtype=torch.long, device=device)] = True
    return seen


def process(scores: torch.Tensor, config: GenerationConfig, seen: torch.Tensor | None, step: int,
            eos_id: int | None) -> torch.Tensor:
    """Apply every processor ``config`` asks for to fp32 ``scores`` of decoding step ``step`` (0-based)."""
    if config.repetition_penalty != 1.0:
        scores = repetition_penalty(scores, seen, config.repetition_penalty)
    if eos_id is not None and step < config.min_new_tokens:
        scores = suppress(scores, eos_id)
    if config.do_sample:
        if config.temperature != 1.0:
            scores = temperature(scores, config.temperature)
        if config.top_k > 0:
            scores = top_k(scores, config.top_k)
        if config.top_p < 1.0:
            scores = top_p(scores, config.top_p)
    return scores
