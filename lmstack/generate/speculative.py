"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023) and prompt-lookup drafting (Saxena 2023).

A cheap drafter proposes k tokens; the target reads the pending token and all k in one forward pass, keeps the
longest prefix it agrees with and adds one token of its own, so each target pass makes 1 to k + 1 tokens:

    draft  d1..dk ~ q                       (a small model on the same tokenizer, or n-gram lookup in the text)
    target p0..pk = target(t, d1..dk)       (one pass; p_i is the distribution after d_i)
    greedy:  keep d_i while d_i = argmax p_{i-1}; then argmax p_n       -> exactly plain greedy decoding
    sampled: keep d_i with probability min(1, p_{i-1}(d_i) / q_{i-1}(d_i)); at the first rejection draw from
             norm(max(0, p - q)); after k kept, draw one more from p_k  -> distributed exactly as sampling from
             the target (Leviathan et al., Theorem 1); a lookup draft is a point mass: q = one-hot.

Every processor of the ``GenerationConfig`` (penalties, min-new-tokens, temperature, top-k / top-p) is applied
to the target's (and a draft model's) logits position by position with the state the tokens before it make, so
the distribution verified is the one plain decoding would sample. One prompt at a time (batch 1). Each model
keeps a KV cache that knows which tokens it holds: after a rejection it is cut back to the accepted prefix
(``KVCache.pos``), never recomputed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import token_budget
from lmstack.generate.processors import DecodeState, LogitsProcessorList, logits_processors, sampler
from lmstack.model.source import LogitSource, ModelSource, to_source


@dataclass
class SpeculativeStats:
    """What a run did: target forward passes, tokens drafted, drafted tokens kept, tokens made."""
    passes: int = 0
    drafted: int = 0
    accepted: int = 0
    tokens: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def as_dict(self) -> dict:
        return {"target_passes": self.passes, "drafted": self.drafted, "accepted": self.accepted,
                "acceptance_rate": round(self.acceptance, 4),
                "tokens_per_pass": round(self.tokens / self.passes, 3) if self.passes else 0.0}


class CachedModel:
    """A causal LM with a batch-1 KV cache that remembers the tokens it holds: ``extend(tokens)`` cuts the cache
    back to the longest prefix it shares with ``tokens`` and reads the rest in one pass."""

    def __init__(self, source: LogitSource, max_len: int):
        if not isinstance(source, ModelSource):
            raise LmstackError("speculative decoding needs plain causal models as target and draft (not an "
                               "encoder-decoder, an adapter with virtual tokens or a mixture of sources); merge a "
                               "LoRA adapter first")
        self.source, self.cache, self.held = source, source.new_cache(1, max_len), []

    def extend(self, tokens: list[int]) -> torch.Tensor:
        """The logits [n, V] after each of the n tokens of ``tokens`` the cache did not hold (at least one)."""
        keep = 0
        for a, b in zip(self.held, tokens[:-1]):
            if a != b:
                break
            keep += 1
        self.cache.pos = keep
        fed = torch.tensor([tokens[keep:]], dtype=torch.long, device=self.source.device)
        logits = self.source.model(fed, self.cache)[0]
        self.held = list(tokens)
        return logits


def _clone(state: DecodeState) -> DecodeState:
    return copy.deepcopy(state)


def processed(processors: LogitsProcessorList, state: DecodeState, logits: torch.Tensor,
              tokens: list[int]) -> torch.Tensor:
    """Scores [len(tokens) + 1, V]: row i processed with ``state`` after ``tokens[:i]`` (``state`` unchanged)."""
    if not processors:  # plain greedy or sampling: the logits are the scores
        return logits.float()
    state = _clone(state)
    rows = []
    for i in range(logits.size(0)):
        rows.append(processors(state, logits[i:i + 1].float()))
        if i < len(tokens):
            state.push([tokens[i]])
    return torch.cat(rows)


class Drafter(Protocol):
    """Proposes the next tokens of a sequence, up to ``num_draft`` at a time."""
    num_draft: int

    def start(self, prompt: list[int], config: GenerationConfig, eos_id: int | None, max_len: int,
              vocab_size: int) -> None:
        """Get ready for ``prompt`` (sequences of up to ``max_len`` tokens over a ``vocab_size`` vocabulary)."""
        ...

    def propose(self, tokens: list[int], state: DecodeState, k: int,
                rng: torch.Generator | None) -> tuple[list[int], torch.Tensor | None]:
        """Up to ``k`` tokens to follow ``tokens``, and the distributions [k, V] they were drawn from (None:
        chosen deterministically, a point mass)."""
        ...


class DraftModel:
    """A smaller model on the same tokenizer drafts, greedily (when the target decodes greedily) or by sampling
    its own processed distribution (Leviathan et al.)."""

    def __init__(self, model: nn.Module | LogitSource, num_draft: int = 4):
        if num_draft < 1:
            raise LmstackError(f"num_draft must be at least 1, got {num_draft}")
        self.source, self.num_draft = to_source(model), num_draft

    def start(self, prompt: list[int], config: GenerationConfig, eos_id: int | None, max_len: int,
              vocab_size: int) -> None:
        if self.source.vocab_size != vocab_size:
            raise LmstackError(f"the draft model's vocabulary has {self.source.vocab_size} tokens, the target's "
                               f"{vocab_size}: a draft must share the target's tokenizer")
        self.lm = CachedModel(self.source, min(max_len, self.source.context))
        self.processors, self.sampled = logits_processors(config, eos_id), config.do_sample

    def propose(self, tokens: list[int], state: DecodeState, k: int,
                rng: torch.Generator | None) -> tuple[list[int], torch.Tensor | None]:
        k = min(k, self.source.context - len(tokens) + 1)  # the draft reads tokens + k - 1 of its own
        if k < 1:
            return [], None
        state, out, qs = _clone(state) if self.processors else state, [], []
        logits = self.lm.extend(tokens)[-1:]
        for i in range(k):
            scores = self.processors(state, logits.float())[0]
            if self.sampled:
                q = scores.softmax(-1)
                token = int(torch.multinomial(q, 1, generator=rng))
                qs.append(q)
            else:
                token = int(scores.argmax())
            out.append(token)
            if i + 1 < k:
                if self.processors:
                    state.push([token])
                logits = self.lm.extend(tokens + out)[-1:]
        return out, torch.stack(qs) if qs else None


class PromptLookup:
    """Drafts by n-gram match (prompt-lookup decoding): the most recent earlier occurrence of the sequence's last
    n tokens (n from ``max_ngram`` down to 1) proposes the tokens that followed it. Free, and strong where the
    output copies its input (retrieval-augmented answers, summaries, code edits)."""

    def __init__(self, max_ngram: int = 3, num_draft: int = 4):
        if max_ngram < 1 or num_draft < 1:
            raise LmstackError(f"prompt lookup needs max_ngram >= 1 and num_draft >= 1, got {max_ngram}, {num_draft}")
        self.max_ngram, self.num_draft = max_ngram, num_draft

    def start(self, prompt: list[int], config: GenerationConfig, eos_id: int | None, max_len: int,
              vocab_size: int) -> None:
        pass

    def propose(self, tokens: list[int], state: DecodeState, k: int,
                rng: torch.Generator | None) -> tuple[list[int], torch.Tensor | None]:
        for n in range(min(self.max_ngram, len(tokens) - 1), 0, -1):
            tail = tokens[-n:]
            for start in range(len(tokens) - n - 1, -1, -1):
                if tokens[start:start + n] == tail:
                    return tokens[start + n:start + n + k], None
        return [], None


def verify(scores: torch.Tensor, draft: list[int], q: torch.Tensor | None, sampled: bool,
           rng: torch.Generator | None) -> tuple[int, int]:
    """(how many draft tokens to keep, the token after them) from the target's processed ``scores`` [m + 1, V]
    at the pending token and after each of the m draft tokens; ``q`` [m, V] the draft distributions (None: the
    draft was a point mass)."""
    if not sampled:
        best = scores.argmax(-1).tolist()
        for i, d in enumerate(draft):
            if best[i] != d:
                return i, best[i]
        return len(draft), best[len(draft)]
    p = scores.softmax(-1)
    for i, d in enumerate(draft):
        q_d = float(q[i, d]) if q is not None else 1.0
        if float(torch.rand((), generator=rng, device=p.device)) * q_d < float(p[i, d]):
            continue  # kept with probability min(1, p(d) / q(d))
        if q is not None:
            residual = (p[i] - q[i]).clamp(min=0)
        else:
            residual = p[i].clone()
            residual[d] = 0.0
        if float(residual.sum()) <= 0.0:  # p == q up to rounding: any draw from p is right
            residual = p[i]
        return i, int(torch.multinomial(residual / residual.sum(), 1, generator=rng))
    return len(draft), int(torch.multinomial(p[len(draft)], 1, generator=rng))


@torch.inference_mode()
def speculative_decode(model: nn.Module | LogitSource, prompt: list[int], config: GenerationConfig, drafter: Drafter,
                       eos_id: int | None = None, stats: SpeculativeStats | None = None) -> Iterator[int]:
    """Yield the continuation of ``prompt`` token by token, drafted by ``drafter`` and verified by ``model``
    (see the module docstring); ends at ``eos_id`` (yielded) or after ``max_new_tokens``."""
    if config.num_beams > 1:
        raise LmstackError("speculative decoding is greedy or sampled, not beam search (num_beams must be 1)")
    source = to_source(model)
    budget = token_budget(source, [prompt], config.max_new_tokens)
    target = CachedModel(source, len(prompt) + budget)
    drafter.start(prompt, config, eos_id, len(prompt) + budget, source.vocab_size)
    stats = stats if stats is not None else SpeculativeStats()
    processors = logits_processors(config, eos_id)
    rng = sampler(config, source.device)
    state = DecodeState.start([prompt], config, source.vocab_size, source.device)
    tokens, draft, q = list(prompt), [], None
    logits = target.extend(tokens)[-1:]
    while True:
        stats.passes += 1
        kept, token = verify(processed(processors, state, logits, draft), draft, q, config.do_sample, rng)
        stats.drafted, stats.accepted = stats.drafted + len(draft), stats.accepted + kept
        for t in draft[:kept] + [token]:
            yield t
            stats.tokens += 1
            state.push([t])
            tokens.append(t)
            if t == eos_id or stats.tokens == budget:
                return
        k = min(drafter.num_draft, budget - stats.tokens - 1)
        draft, q = drafter.propose(tokens, state, k, rng) if k > 0 else ([], None)
        logits = target.extend(tokens + draft)[-(len(draft) + 1):]
