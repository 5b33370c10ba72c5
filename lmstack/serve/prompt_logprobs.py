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


PROMPT_BATCH = 16  # prompts scored in one forward pass


def prompt_logprobs(model: nn.Module, prompts: list[list[int]], k: int) -> list[list[PromptToken]]:
    """Each token of each prompt with log p(token | tokens before it) under ``model`` and the ``k`` most likely
    tokens at its position: ``PROMPT_BATCH`` prompts a forward pass, right-padded (a causal model never attends
    forward, so a row's real positions are those of the prompt alone); runs on the engine thread."""
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths share a batch
    scored: dict[int, list[PromptToken]] = {}
    for lo in range(0, len(order), PROMPT_BATCH):
        rows = order[lo:lo + PROMPT_BATCH]
        idx = torch.zeros(len(rows), len(prompts[rows[0]]), dtype=torch.long, device=device)
        for r, i in enumerate(rows):
            idx[r, :len(prompts[i])] = torch.tensor(prompts[i], device=device)
        logp = model(idx)[:, :-1].float().log_softmax(dim=-1)  # position j predicts token j + 1
        chosen = logp.gather(2, idx[:, 1:, None])[..., 0]
        top = torch.topk(logp, k) if k else None
        for r, i in enumerate(rows):
            ids, n = prompts[i], len(prompts[i]) - 1
            values = chosen[r, :n].tolist()
            tops = [[] for _ in range(n)] if top is None else [
                list(zip(a, b)) for a, b in zip(top.indices[r, :n].tolist(), top.values[r, :n].tolist())]
            scored[i] = [PromptToken(ids[0], None, None)] + [PromptToken(t, v, p)
                                                             for t, v, p in zip(ids[1:], values, tops)]
    return [scored[i] for i in range(len(prompts))]


async def score_prompts(engine: Engine, prompts: list[list[int]], k: int) -> list[list[PromptToken]]:
    """``prompt_logprobs`` of the prompts, computed on the engine thread between decoding steps."""
    if not isinstance(engine.model, nn.Module):
        raise APIError(400, "echo with logprobs needs a model; this server decodes a mixture of sources",
                       param="echo")

    def score(chunk: list[list[int]]) -> list[list[PromptToken]]:  # on the engine thread, which owns its counters
        engine.prompt_tokens += sum(map(len, chunk))
        return prompt_logprobs(engine.model, chunk, k)

    out: list[list[PromptToken]] = []
    for lo in range(0, len(prompts), PROMPT_BATCH):  # one batch per engine call: decoding steps run in between
        chunk = prompts[lo:lo + PROMPT_BATCH]
        out += await asyncio.wrap_future(engine.call(lambda chunk=chunk: score(chunk)))
    return out
