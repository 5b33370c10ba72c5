"""``POST /v1/completions``: each prompt (text, or token ids) continued as it is (special-token strings count as
such), until eos; with ``echo`` the prompt comes back before the continuation (and with ``logprobs`` its tokens'
log-probabilities), and ``max_tokens: 0`` with ``echo`` scores the prompt without generating.

The legacy ``logprobs`` object lists every token the choice consumed, an end token included (its text is not in
``text``), as vLLM's does: lm-evaluation-harness's ``local-completions`` sends ``echo``, ``max_tokens: 1``,
``logprobs: 1`` over token-id prompts and reads ``token_logprobs[ctxlen:-1]``, so the one generated token must be
the last entry even when it is eos."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from lmstack.serve.backend import Backend, Choices, Output, check_finish, usage
from lmstack.serve.engine import Event
from lmstack.serve.errors import RESPONSES, APIError
from lmstack.serve.prompt_logprobs import PromptToken, score_prompts
from lmstack.serve.schemas import CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse
from lmstack.serve.sse import sse


def router(backend: Backend) -> APIRouter:
    routes = APIRouter()
    tokenizer = backend.tokenizer
    start = [tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id]
    # eos, and every end id the model directory's generation_config.json lists (a chat model's turn end), as
    # transformers and vLLM stop there
    end_ids = frozenset(i for i in (tokenizer.eos_id, *backend.settings.end_ids) if i is not None)

    @routes.post("/v1/completions", response_model=CompletionResponse, responses=RESPONSES)
    async def complete(body: CompletionRequest, request: Request):
        """Text completions: an empty prompt starts a new document (bos, or failing that eos)."""
        backend.check_model(body.model)
        backend.check_fields(body)
        _check(body)
        prompts = await run_in_threadpool(lambda: [(tokenizer.encode(p) or start) if isinstance(p, str) else p
                                                   for p in body.prompt])
        backend.check_ids([p for p in body.prompt if not isinstance(p, str)], "prompt")
        if body.n * len(prompts) > 64:
            raise APIError(400, "n times the number of prompts may be at most 64", param="n")
        generate = body.max_tokens > 0
        if generate:
            budgets = [backend.budget(len(p), body.max_tokens, param="prompt") for p in prompts]
        else:
            for p in prompts:
                backend.fits(len(p), param="prompt")
        echoes = [_Echo(p if isinstance(p, str) else await run_in_threadpool(tokenizer.decode, p))
                  for p in body.prompt] if body.echo else None
        if echoes and body.logprobs is not None:
            for echo, scored in zip(echoes, await score_prompts(backend.engine, prompts, body.logprobs)):
                echo.tokens = scored
        grammar = backend.grammar(body.response_format, end_ids)
        choices = backend.submit(list(zip(prompts, budgets)) if generate else [], body, end_ids, body.logprobs,
                                 grammar)
        prompt_of = [k for k in range(len(prompts)) for _ in range(body.n)]  # choice -> its prompt
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return sse(_chunks(backend, choices, body, rid, created, prompt_of, echoes, sum(map(len, prompts))),
                       choices.cancel)
        outs = await choices.collect(request) if generate else [Output(finish="length") for _ in prompt_of]
        answers = []
        for i, out in enumerate(outs):
            echo = echoes[prompt_of[i]] if echoes else None
            answers.append(CompletionChoice(
                index=i, text=(echo.text if echo else "") + out.text, finish_reason=out.finish,
                logprobs=_logprobs(backend, out.tokens + [out.end] * (out.end is not None), echo)
                if body.logprobs is not None else None))
        return CompletionResponse(id=rid, created=created, model=backend.settings.model_name, choices=answers,
                                  usage=usage(sum(map(len, prompts)), outs))

    return routes


@dataclass
class _Echo:
    """A prompt as echoed: its text, and its tokens' log-probabilities when asked for."""
    text: str
    tokens: list[PromptToken] | None = None


def _check(body: CompletionRequest) -> None:
    if body.best_of is not None and body.best_of != body.n:
        raise APIError(400, f"best_of={body.best_of}: only best_of equal to n ({body.n}) is supported (choices "
                            "are not re-ranked here)", param="best_of")
    if body.max_tokens == 0 and not body.echo:
        raise APIError(400, "max_tokens: 0 needs echo: true (the prompt is scored, nothing is generated)",
                       param="max_tokens")


async def _chunks(backend: Backend, choices: Choices, body: CompletionRequest, rid: str, created: int,
                  prompt_of: list[int], echoes: list[_Echo] | None, prompt_tokens: int) -> AsyncIterator[dict]:
    """The echoed prompt (if asked), then each token's text (with its logprobs, if asked), a finish chunk per
    choice, and with ``stream_options.include_usage`` a last chunk with the usage and no choices."""
    name, want = backend.settings.model_name, body.logprobs is not None

    def chunk(index: int, text: str, finish: str | None, logprobs: CompletionLogprobs | None) -> dict:
        return {"id": rid, "object": "text_completion", "created": created, "model": name,
                "choices": [{"index": index, "text": text, "finish_reason": finish,
                             "logprobs": None if logprobs is None else logprobs.model_dump()}]}

    offsets, outs = [0] * len(prompt_of), [Output() for _ in prompt_of]
    generate = body.max_tokens > 0
    for i in range(len(prompt_of) if echoes else 0):
        echo = echoes[prompt_of[i]]
        logprobs = _logprobs(backend, [], echo) if want else None
        offsets[i] = len(echo.text)
        yield chunk(i, echo.text, None if generate else "length", logprobs)
    if not generate:
        outs = [Output(finish="length") for _ in prompt_of]
    async for i, event in choices.events_until_done():
        outs[i].add(event, choices.jobs[i].stop_ids)
        if event.finish:
            check_finish(event.finish, event.error)
        logprobs = None
        if want and event.token is not None and event.logprob is not None:
            logprobs = _logprobs(backend, [event], None, offsets[i])
            offsets[i] += len(logprobs.tokens[0])
        if event.text or event.finish or logprobs:
            yield chunk(i, event.text, event.finish, logprobs)
    if body.include_usage:
        yield {"id": rid, "object": "text_completion", "created": created, "model": name, "choices": [],
               "usage": usage(prompt_tokens, outs).model_dump()}


def _logprobs(backend: Backend, events: list[Event], echo: _Echo | None, start: int = 0) -> CompletionLogprobs:
    """Each token's text, log-probability, offset in the choice's text and the most likely tokens: the echoed
    prompt's tokens first (the very first has none), then the generated ones (an end token last)."""
    decode = backend.tokenizer.decode
    entries = [(t.token, t.logprob, t.top) for t in (echo.tokens or [])] if echo else []
    entries += [(e.token, e.logprob, e.top or []) for e in events]
    tokens, offsets, pos = [], [], start
    for token, _, _ in entries:
        tokens.append(decode([token]))
        offsets.append(pos)
        pos += len(tokens[-1])
    return CompletionLogprobs(tokens=tokens, token_logprobs=[lp for _, lp, _ in entries], text_offset=offsets,
                              top_logprobs=[None if top is None else {decode([t]): lp for t, lp in top}
                                            for _, _, top in entries])
