"""Greedy decoding and sampling for a batch of prompts over a logit source: prefill its cache once, then one
token per step.

Prompts of different lengths are left-padded: ``key_mask`` hides the padding from attention and
``positions`` count real tokens only, so every row decodes as it would alone.

K continuations of one prompt (self-consistency, Wang et al. 2023: sample K reasoning paths, vote on the answer;
RL rollouts) share its prefill: ``decode(..., num_return_sequences=K)`` reads each prompt once, copies its cache
rows to K rows (``LogitSource.reorder`` with a repeated index, whatever the source's cache kind), then samples
each row with a generator of its own seeded ``seed + j``, so the j-th continuation is the one a single run with
that seed makes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Iterator

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.grammar import Constraint, mask_rows
from lmstack.generate.processors import DecodeState, LogitsProcessorList, logits_processors, pick, sampler
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


def continued(source: LogitSource, prompts: list[list[int]]) -> list[list[int]]:
    """The tokens each output continues, as a repetition penalty sees them: the prompt, or what the source says
    it is (``output_prefix``: an encoder-decoder's output continues its decoder start token, not its input)."""
    own = getattr(source, "output_prefix", None)
    return [own(p) for p in prompts] if callable(own) else prompts


@dataclass
class Batch:
    """Prompts left-padded into one tensor; ``positions``/``key_mask`` are None when all lengths agree."""
    idx: torch.Tensor  # [B, T]
    lengths: torch.Tensor  # [B]
    positions: torch.Tensor | None  # [B, T]: index of each token among its row's real tokens
    key_mask: torch.Tensor | None  # [B, T + new tokens]: True where a real (prompt or generated) token sits

    def rows(self, index: torch.Tensor) -> Batch:
        """The batch with its rows picked (and repeated) by ``index``."""
        positions, key_mask = (None if t is None else t.index_select(0, index) for t in (self.positions, self.key_mask))
        return Batch(self.idx.index_select(0, index), self.lengths.index_select(0, index), positions, key_mask)


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
           eos_id: int | None = None, constraints: list[Constraint | None] | None = None,
           num_return_sequences: int = 1) -> Iterator[torch.Tensor]:
    """Yield the next token of every row ([B] long) once per step, greedy or sampled as ``config`` says.

    ``model`` is a logit source, or a model decoded through its own (``to_source``; ``config.compile``
    compiles its one-token step). A row that has produced ``eos_id`` repeats it; decoding ends when every
    row has, or after ``max_new_tokens``. ``constraints[row]`` (structured outputs, ``generate.grammar``)
    masks that row's scores before the processors and picking, and follows its tokens until one of its end
    tokens; None leaves a row free. With ``num_return_sequences`` K > 1 there are B * K rows, row b * K + j
    the j-th continuation of prompt b, all K sharing one prefill of the prompt; sampled, row j draws with its
    own generator seeded ``config.seed + j`` (as a single run with that seed draws); ``constraints`` has B * K.
    """
    k = num_return_sequences
    if k < 1:
        raise LmstackError(f"num_return_sequences must be at least 1, got {k}")
    rows = [p for p in prompts for _ in range(k)]
    if constraints is not None and len(constraints) != len(rows):
        raise ValueError(f"{len(constraints)} constraints for {len(rows)} rows")
    live = None if constraints is None or all(c is None for c in constraints) else list(constraints)
    source = to_source(model, config.compile)
    device = source.device
    T = max(map(len, prompts))
    budget = token_budget(source, prompts, config.max_new_tokens)
    batch = left_pad(prompts, T + budget, device)
    cache = source.new_cache(len(prompts), T + budget)
    logits = source.prefill(batch.idx, cache, batch.positions, batch.key_mask)
    if k > 1:  # one prefill per prompt, its cache rows copied to its K continuations
        index = torch.arange(len(prompts), device=device).repeat_interleave(k)
        source.reorder(cache, index)
        logits, batch = logits.index_select(0, index), batch.rows(index)
    processors = logits_processors(config, eos_id)
    rng = sampler(config, device) if k == 1 else row_samplers(config, len(prompts), k, device)
    state = DecodeState.start(continued(source, rows), config, source.vocab_size, device)
    finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
    for i in range(budget):
        scores = processed_scores(logits.float(), live, processors, state)
        token = pick(scores, rng) if not isinstance(rng, list) else pick_rows(scores, rng)
        if eos_id is not None:
            token.masked_fill_(finished, eos_id)
            finished |= token == eos_id
        if live is not None:
            _advance(live, token.tolist())
        yield token
        if i + 1 == budget or (eos_id is not None and bool(finished.all())):
            return
        state.push(token)
        positions = None if batch.positions is None else (batch.lengths + i)[:, None]
        logits = source.step(token, cache, positions, batch.key_mask)


def row_samplers(config: GenerationConfig, n_prompts: int, k: int,
                 device: torch.device | str = "cpu") -> list[torch.Generator] | None:
    """One generator per row of ``n_prompts`` prompts times ``k`` continuations: continuation j is seeded
    ``config.seed + j`` (kept in the int64 range, as the server seeds its n choices; freshly by the OS when the
    seed is None); None for greedy decoding."""
    if not config.do_sample:
        return None
    seeds = [None if config.seed is None else (config.seed + j + 2**63) % 2**64 - 2**63 for j in range(k)]
    return [sampler(dataclasses.replace(config, seed=seed), device) for _ in range(n_prompts) for seed in seeds]


def pick_rows(scores: torch.Tensor, rngs: list[torch.Generator] | None) -> torch.Tensor:
    """``pick`` row by row, row r drawing with ``rngs[r]`` (greedy when None): each row's draw is the one a
    batch of that row alone makes with its generator."""
    if rngs is None:
        return pick(scores)
    return torch.cat([pick(scores[r:r + 1], g) for r, g in enumerate(rngs)])


def processed_scores(logits: torch.Tensor, live: list[Constraint | None] | None, processors: LogitsProcessorList,
            state: DecodeState) -> torch.Tensor:
    """The processed scores, constrained rows masked first (so top-k / top-p choose among allowed tokens); a row
    a processor left with nothing (min_new_tokens forbidding the end a grammar requires) keeps its masked scores."""
    if live is None or not any(live):
        return processors(state, logits)
    masked = mask_rows(logits, live)
    scores = processors(state, masked)
    empty = torch.isneginf(scores).all(dim=-1)
    return torch.where(empty[:, None], masked, scores) if bool(empty.any()) else scores


def _advance(live: list[Constraint | None], tokens: list[int]) -> None:
    """Each constrained row moves past its token; a row whose grammar has met an end token is free from then on
    (the caller stops reading it)."""
    for row, constraint in enumerate(live):
        if constraint is not None:
            constraint.advance(tokens[row])
            if tokens[row] in constraint.grammar.end_ids:
                live[row] = None
