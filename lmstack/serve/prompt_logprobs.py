"""The log-probabilities of a prompt's own tokens: what ``/v1/completions`` returns with ``echo`` and
``logprobs`` (and, with ``max_tokens: 0``, all it returns: lm-evaluation-harness scores continuations so).

As in OpenAI's and vLLM's answers, the first token has no log-probability (nothing predicts it): its entry is
None, and so are its most likely tokens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import torch
from torch import nn

from lmstack.serve.engine import Engine
from lmstack.serve.errors import APIError


@dataclass
class PromptToken:
    token: int
    logprob: float | None
    top: list[tuple[int, float]] | None


def prompt_logprobs(model: nn.Module, ids: list[int], k: int) -> list[PromptToken]:
    """Each token of ``ids`` with log p(token | tokens before it) under ``model`` and the ``k`` most likely
    tokens at its position (one forward pass over the prompt; runs on the engine thread)."""
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    logp = model(idx)[0, :-1].float().log_softmax(dim=-1)  # position j predicts token j + 1
    chosen = logp.gather(1, idx[0, 1:, None])[:, 0].tolist()
    top = torch.topk(logp, k) if k else None
    out = [PromptToken(ids[0], None, None)]
    for j, token in enumerate(ids[1:]):
        pairs = [] if top is None else list(zip(top.indices[j].tolist(), top.values[j].tolist()))
        out.append(PromptToken(token, chosen[j], pairs))
    return out


async def score_prompts(engine: Engine, prompts: list[list[int]], k: int) -> list[list[PromptToken]]:
    """``prompt_logprobs`` of each prompt, computed on the engine thread between decoding steps."""
    if not isinstance(engine.model, nn.Module):
        raise APIError(400, "echo with logprobs needs a model; this server decodes a mixture of sources",
                       param="echo")
    def score(ids: list[int]) -> list[PromptToken]:  # on the engine thread, which owns its counters
        engine.prompt_tokens += len(ids)
        return prompt_logprobs(engine.model, ids, k)

    return [await asyncio.wrap_future(engine.call(lambda ids=ids: score(ids))) for ids in prompts]
