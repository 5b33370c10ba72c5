"""``POST /v1/completions``: each prompt continued as it is (special-token strings count as such), until eos."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from lmstack.serve.backend import Backend, Choices, Output, check_finish, usage
from lmstack.serve.errors import RESPONSES, APIError
from lmstack.serve.schemas import CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse
from lmstack.serve.sse import sse


def router(backend: Backend) -> APIRouter:
    routes = APIRouter()
    tokenizer = backend.tokenizer
    start = [tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id]
    end_ids = frozenset(i for i in (tokenizer.eos_id,) if i is not None)

    @routes.post("/v1/completions", response_model=CompletionResponse, responses=RESPONSES)
    async def complete(body: CompletionRequest, request: Request):
        """Text completions: an empty prompt starts a new document (bos, or failing that eos)."""
        backend.check_model(body.model)
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        prompts = await run_in_threadpool(lambda: [tokenizer.encode(t) or start for t in texts])
        if body.n * len(prompts) > 64:
            raise APIError(400, "n times the number of prompts may be at most 64", param="n")
        budgets = [backend.budget(len(p), body.max_tokens) for p in prompts]
        choices = backend.submit(list(zip(prompts, budgets)), body, end_ids, body.logprobs)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return sse(_chunks(backend, choices, rid, created), choices.cancel)
        outs = await choices.collect(request)
        answers = [CompletionChoice(index=i, text=out.text, finish_reason=out.finish,
                                    logprobs=_logprobs(backend, out) if body.logprobs is not None else None)
                   for i, out in enumerate(outs)]
        return CompletionResponse(id=rid, created=created, model=backend.settings.model_name, choices=answers,
                                  usage=usage(sum(map(len, prompts)), outs))

    return routes


async def _chunks(backend: Backend, choices: Choices, rid: str, created: int) -> AsyncIterator[dict]:
    async for i, event in choices.events_until_done():
        if event.finish:
            check_finish(event.finish, event.error)
        if event.text or event.finish:
            yield {"id": rid, "object": "text_completion", "created": created, "model": backend.settings.model_name,
                   "choices": [{"index": i, "text": event.text, "finish_reason": event.finish, "logprobs": None}]}


def _logprobs(backend: Backend, out: Output) -> CompletionLogprobs:
    """Each token's text, log-probability, offset in the completion and the most likely tokens."""
    decode = backend.tokenizer.decode
    tokens, offsets, pos = [], [], 0
    for e in out.tokens:
        tokens.append(decode([e.token]))
        offsets.append(pos)
        pos += len(tokens[-1])
    return CompletionLogprobs(tokens=tokens, token_logprobs=[e.logprob for e in out.tokens], text_offset=offsets,
                              top_logprobs=[{decode([t]): lp for t, lp in e.top or []} for e in out.tokens])
