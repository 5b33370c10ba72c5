"""Beam search, as ``transformers`` defines it (so both pick the same tokens on the same weights).

Each step extends every live beam by every token, scores a candidate by its summed log-probabilities, and
keeps the best ``2 * num_beams`` (enough that ``num_beams`` survive even if every beam picks eos). A
candidate among the top ``num_beams`` that ends in eos (or reaches the length limit) is finished, scored
sum(log p) / generated_length ** length_penalty (Wu et al. 2016; length_penalty > 0 favours longer
outputs), and kept if it is among the best ``num_beams`` finished ones. Search stops when ``num_beams``
are finished and either ``early_stopping`` is true or the best live beam can no longer beat the worst
finished one (judged at the current length, or for ``"never"`` with length_penalty > 0, at the limit).
"""

from __future__ import annotations

import torch
from torch import nn

from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import continued, token_budget
from lmstack.generate.processors import DecodeState, logits_processors
from lmstack.model.source import LogitSource, to_source

DEAD = -1.0e9  # the score of a beam that may not be extended


@torch.inference_mode()
def beam_search(model: nn.Module | LogitSource, prompt: list[int], config: GenerationConfig,
                eos_id: int | None = None) -> list[int]:
    """The best finished continuation of ``prompt`` (ending in eos if it finished that way), over a logit
    source or a model's own (``to_source``)."""
    n, lp = config.num_beams, config.length_penalty
    source = to_source(model)
    budget = token_budget(source, [prompt], config.max_new_tokens)
    device = source.device
    cache = source.new_cache(1, len(prompt) + budget)
    logits = source.prefill(torch.tensor([prompt], device=device), cache).expand(n, -1)
    source.reorder(cache, torch.zeros(n, dtype=torch.long, device=device))  # every beam starts from the prompt
    beams: list[list[int]] = [[] for _ in range(n)]
    scores = torch.full((n,), DEAD, device=device)
    scores[0] = 0.0  # only the first copy is live, so the first step does not pick one token n times
    processors = logits_processors(config, eos_id)
    state = DecodeState.start(continued(source, [prompt]) * n, config, source.vocab_size, device)
    finished: list[tuple[float, list[int]]] = []  # (score, tokens), best first, at most n
    for i in range(budget):
        log_probs = processors(state, torch.log_softmax(logits.float(), dim=-1))
        top, index = (scores[:, None] + log_probs).view(-1).topk(2 * n)
        beam, token = index // log_probs.size(-1), index % log_probs.size(-1)
        ends = (token == (-1 if eos_id is None else eos_id)) | (i + 1 == budget)  # the length limit ends all
        normalised = (top[:n] / (i + 1) ** lp).tolist()
        for rank in ends[:n].nonzero().flatten().tolist():
            finished.append((normalised[rank], beams[beam[rank]] + [int(token[rank])]))
        finished = sorted(finished, key=lambda f: f[0], reverse=True)[:n]
        if i + 1 == budget:
            break
        live = (~ends).nonzero().flatten()[:n]  # the n best candidates that go on
        beam, token, scores = beam[live], token[live], top[live]
        beams = [beams[b] + [t] for b, t in zip(beam.tolist(), token.tolist())]
        if len(finished) == n and (config.early_stopping is True or _cannot_improve(scores[0], finished[-1][0], i + 1,
                                                                                    budget, config)):
            break
        source.reorder(cache, beam)
        state.reorder(beam)
        state.push(token)
        logits = source.step(token, cache)
    return finished[0][1]


def _cannot_improve(best_live: torch.Tensor, worst_finished: float, length: int, budget: int,
                    config: GenerationConfig) -> bool:
    """transformers' heuristic: the best live beam, at its best plausible length, scores no better."""
    if config.early_stopping == "never" and config.length_penalty > 0:
        length = budget
    return bool(best_live / length ** config.length_penalty <= worst_finished)
