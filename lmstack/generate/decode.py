"""Greedy decoding and sampling for a batch of prompts: prefill the KV cache once, then one token per step.

Prompts of different lengths are left-padded: ``key_mask`` hides the padding from attention and
``positions`` count real tokens only, so every row decodes as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.processors import process, seen_tokens
from lmstack.model import Transformer

Step = Callable[..., torch.Tensor]  # (idx, cache, positions, key_mask) -> logits; the model, or it compiled


def token_budget(model: Transformer, prompts: list[list[int]], max_new_tokens: int) -> int:
    """How many tokens to generate: ``max_new_tokens``, or fewer where the context ends first."""
    context, prompt_len = model.config.block_size, max(map(len, prompts))
    if not all(prompts):
        raise LmstackError("a prompt is empty; give at least one token")
    if prompt_len >= context:
        raise LmstackError(f"the prompt is {prompt_len} tokens but the model's context is {context} tokens; "
                           "shorten the prompt to leave room for new tokens")
    return min(max_new_tokens, context - prompt_len)


@dataclass
class Batch:
    """Prompts left-padded into one tensor; ``positions``/``key_mask`` are None when all lengths agree."""
    idx: torch.Tensor  # [B, T]
    lengths: torch.Tensor  # [B]
    positions: torch.Tensor | None  # [B, T]: index of each token among its row's real tokens
    key_mask: torch.Tensor | None  # [B, T + new tokens]: True where a real (prompt or generated) token sits


def left_pad(prompts: list[list[int]], total_len: int, device: torch.device) -> Batch:
    T = max(map(len, prompts))
    idx = torch.zeros(len(prompts), T, dtype=torch.long)
    for row, p in enumerate(prompts):
        idx[row, T - len(p):] = torch.tensor(p)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    if all(len(p) == T for p in prompts):
        return Batch(idx.to(device), lengths, None, None)
    pad = T - lengths
    positions = (torch.arange(T, device=device) - pad[:, None]).clamp(min=0)
    key_mask = torch.arange(total_len, device=device) >= pad[:, None]
    return Batch(idx.to(device), lengths, positions, key_mask)


@torch.inference_mode()
def decode(model: Transformer, prompts: list[list[int]], config: GenerationConfig, eos_id: int | None = None,
           step: Step | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row ([B] long) once per step, greedy or sampled as ``config`` says.

    A row that has produced ``eos_id`` repeats it; decoding ends when every row has, or after
    ``max_new_tokens``. ``step`` replaces the model for the one-token steps (e.g. a compiled model).
    """
    step = model if step is None else step
    device = model.tok_emb.weight.device
    T = max(map(len, prompts))
    budget = token_budget(model, prompts, config.max_new_tokens)
    batch = left_pad(prompts, T + budget, device)
    cache = model.new_cache(len(prompts), T + budget)
    rng = _generator(config.seed, device) if config.do_sample else None
    seen = seen_tokens(prompts, model.config.vocab_size, device) if config.repetition_penalty != 1.0 else None
    rows = torch.arange(len(prompts), device=device)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    logits = model(batch.idx, cache, batch.positions, batch.key_mask, last_only=True)
    for i in range(budget):
        scores = process(logits[:, -1].float(), config, seen, i, eos_id)
        token = _pick(scores, rng)
        if eos_id is not None:
            token.masked_fill_(finished, eos_id)
            finished |= token == eos_id
        yield token
        if i + 1 == budget or (eos_id is not None and bool(finished.all())):
            return
        if seen is not None:
            seen[rows, token] = True
        positions = None if batch.positions is None else (batch.lengths + i)[:, None]
        logits = step(token[:, None], cache, positions, batch.key_mask)


def _pick(scores: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
    """argmax, or a draw from softmax(scores) with ``rng`` (never the global RNG)."""
    if rng is None:
        return scores.argmax(dim=-1)
    return torch.multinomial(scores.softmax(dim=-1), num_samples=1, generator=rng).squeeze(1)


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    rng = torch.Generator(device)
    if seed is None:
        rng.seed()  # a fresh seed from the OS
    else:
        rng.manual_seed(seed)
    return rng
