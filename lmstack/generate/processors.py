"""Logits processors: callables ``(state, scores) -> scores`` that reshape next-token scores [B, V] before a
token is picked, as ``transformers``' ``LogitsProcessor``s do with ``(input_ids, scores)``.

Each matches the ``transformers`` processor of the same name value for value (OpenAI's frequency and
presence penalties, which transformers lacks, follow OpenAI's and vLLM's formula). ``logits_processors`` builds
the list a ``GenerationConfig`` asks for once, in the order ``transformers`` and vLLM apply them: repetition
penalty, frequency/presence penalties, logit bias, min-new-tokens, then (sampling only) temperature, top-k,
top-p. ``pick`` then takes the argmax or draws a token with a seeded ``torch.Generator`` of the request's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import torch

from lmstack.generate.config import GenerationConfig


@dataclass
class DecodeState:
    """What processors read in place of transformers' ``input_ids``: which tokens each row holds so far
    (``seen`` [B, V] bool, prompt included), how often each was generated (``counts`` [B, V] float, the
    output only, as OpenAI's penalties read it), each kept only when a processor needs it, and how many
    tokens have been made."""
    seen: torch.Tensor | None = None
    step: int = 0
    counts: torch.Tensor | None = None

    @classmethod
    def start(cls, rows: list[list[int]], config: GenerationConfig, vocab_size: int,
              device: torch.device | str = "cpu") -> DecodeState:
        penalised = config.frequency_penalty != 0 or config.presence_penalty != 0
        return cls(seen_tokens(rows, vocab_size, device) if config.repetition_penalty != 1.0 else None,
                   counts=torch.zeros(len(rows), vocab_size, device=device) if penalised else None)

    def push(self, tokens: torch.Tensor | list[int]) -> None:
        """Record one new token per row ([B] long, or a list)."""
        for kept in (self.seen, self.counts):
            if kept is not None:
                rows, ids = torch.arange(len(tokens), device=kept.device), torch.as_tensor(tokens, device=kept.device)
                kept[rows, ids] = True if kept.dtype == torch.bool else kept[rows, ids] + 1
        self.step += 1

    def reorder(self, index: torch.Tensor) -> None:
        """Rows follow their parents (beam search)."""
        if self.seen is not None:
            self.seen = self.seen[index]
        if self.counts is not None:
            self.counts = self.counts[index]


Processor = Callable[[DecodeState, torch.Tensor], torch.Tensor]


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


def frequency_presence(scores: torch.Tensor, counts: torch.Tensor, frequency: float, presence: float) -> torch.Tensor:
    """OpenAI's penalties, as vLLM applies them: ``logit - frequency * count - presence * (count > 0)``, where
    ``counts`` [B, V] says how often each token was generated so far (the prompt does not count)."""
    return scores - frequency * counts - presence * (counts > 0).to(scores.dtype)


def logit_bias(scores: torch.Tensor, bias: dict[int, float]) -> torch.Tensor:
    """OpenAI's ``logit_bias``: each listed token's bias added to its logit (-100 all but bans it, 100 all but
    forces it); ``transformers``' ``SequenceBiasLogitsProcessor`` with one-token sequences."""
    ids = torch.tensor(list(bias), dtype=torch.long, device=scores.device)
    scores = scores.clone()
    scores[..., ids] += torch.tensor(list(bias.values()), dtype=scores.dtype, device=scores.device)
    return scores


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


class LogitsProcessorList(list[Processor]):
    """Processors applied in order, as transformers' class of the same name."""

    def __call__(self, state: DecodeState, scores: torch.Tensor) -> torch.Tensor:
        for processor in self:
            scores = processor(state, scores)
        return scores


def logits_processors(config: GenerationConfig, eos_id: int | None = None) -> LogitsProcessorList:
    """The processors ``config`` asks for (empty for plain greedy or plain sampling), in transformers' order
    (OpenAI's penalties and logit bias after the repetition penalty and before temperature, as in vLLM)."""
    out = LogitsProcessorList()
    if config.repetition_penalty != 1.0:
        out.append(lambda state, s: repetition_penalty(s, state.seen, config.repetition_penalty))
    if config.frequency_penalty != 0 or config.presence_penalty != 0:
        out.append(lambda state, s: frequency_presence(s, state.counts, config.frequency_penalty,
                                                       config.presence_penalty))
    if config.logit_bias:
        out.append(lambda state, s: logit_bias(s, config.logit_bias))
    if eos_id is not None and config.min_new_tokens > 0:
        out.append(lambda state, s: suppress(s, eos_id) if state.step < config.min_new_tokens else s)
    if config.do_sample:
        if config.temperature != 1.0:
            out.append(lambda state, s: temperature(s, config.temperature))
        if config.top_k > 0:
            out.append(lambda state, s: top_k(s, config.top_k))
        if config.top_p < 1.0:
            out.append(lambda state, s: top_p(s, config.top_p))
    return out


def pick(scores: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
    """The next token of each row ([B] long): the argmax, or with ``rng`` a draw from softmax(scores) (never
    from the global RNG, so a seed fixes a request's text whatever else runs)."""
    if rng is None:
        return scores.argmax(dim=-1)
    return torch.multinomial(scores.softmax(dim=-1), num_samples=1, generator=rng).squeeze(1)


def sampler(config: GenerationConfig, device: torch.device | str = "cpu") -> torch.Generator | None:
    """The generator ``pick`` draws with when ``config`` samples (seeded by ``config.seed``, or freshly by the
    OS when it is None); None for greedy decoding."""
    if not config.do_sample:
        return None
    rng = torch.Generator(device)
    if config.seed is None:
        rng.seed()
    else:
        rng.manual_seed(config.seed)
    return rng
