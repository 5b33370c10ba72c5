"""Greedy decoding and sampling for a batch of prompts over a logit source: prefill its cache once, then one
token per step.

Prompts of different lengths are left-padded: ``key_mask`` hides the padding from attention and
``positions`` count real tokens only, so every row decodes as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.processors import DecodeState, logits_processors, pick, sampler
from lmstack.model.source import LogitSource, to_source


def token_budget(source: LogitSource, prompts: list[list[int]], max_new_tokens: int) -> int:
    """How many tokens to generate: ``max_new_tokens``, or fewer where the context ends first."""
    context, prompt_len = source.context, max(map(len, prompts))
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
def decode(model: nn.Module | LogitSource, prompts: list[list[int]], config: GenerationConfig,
           eos_id: int | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row ([B] long) once per step, greedy or sampled as ``config`` says.

    ``model`` is a logit source, or a model decoded through its own (``to_source``; ``config.compile``
    compiles its one-token step). A row that has produced ``eos_id`` repeats it; decoding ends when every
    row has, or after ``max_new_tokens``.
    """
    source = to_source(model, config.compile)
    device = source.device
    T = max(map(len, prompts))
    budget = token_budget(source, prompts, config.max_new_tokens)
    batch = left_pad(prompts, T + budget, device)
    cache = source.new_cache(len(prompts), T + budget)
    processors, rng = logits_processors(config, eos_id), sampler(config, device)
    state = DecodeState.start(prompts, config, source.vocab_size, device)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    logits = source.prefill(batch.idx, cache, batch.positions, batch.key_mask)
    for i in range(budget):
        token = pick(processors(state, logits.float()), rng)
        if eos_id is not None:
            token.masked_fill_(finished, eos_id)
            finished |= token == eos_id
        yield token
        if i + 1 == budget or (eos_id is not None and bool(finished.all())):
            return
        state.push(token)
        positions = None if batch.positions is None else (batch.lengths + i)[:, None]
        logits = source.step(token, cache, positions, batch.key_mask)
