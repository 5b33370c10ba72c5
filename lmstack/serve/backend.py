"""The engine as the routes see it: an API request's decodings queued together, their events streamed or
gathered, and cancelled together when the client goes away.

The asyncio side only validates, tokenizes, queues and streams; the model runs in the engine's thread, which
hands each event over to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from collections.abc import AsyncIterator

from fastapi import Request

from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.grammar import Grammar, response_format_grammar
from lmstack.serve.engine import Engine, EngineBusy, Event
from lmstack.serve.engine import Request as Job
from lmstack.serve.errors import APIError
from lmstack.serve.metrics_route import ServerMetrics
from lmstack.serve.schemas import Open, ResponseFormat, Sampling, TokenLogprob, TopLogprob, Usage
from lmstack.serve.settings import Settings
from lmstack.text.chat import ChatFormat

log = logging.getLogger("lmstack.serve")


class Backend:
    """One engine, its tokenizer and chat format, the operator's settings and the server's metrics, shared by every
    route."""

    def __init__(self, engine: Engine, settings: Settings, metrics: ServerMetrics | None = None):
        self.engine, self.settings = engine, settings
        self.metrics = metrics or ServerMetrics()
        self.tokenizer = engine.tokenizer
        self.chat = ChatFormat(self.tokenizer)
        self.context = engine.max_len
        self.created = int(time.time())

    def check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise APIError(404, f"the model {name!r} does not exist; this server serves {self.settings.model_name!r}",
                           param="model", code="model_not_found")

    def check_fields(self, body: Open) -> None:
        """Fields outside OpenAI's schema: ignored with a logged warning, or a 400 under ``--strict``."""
        unknown = sorted(body.model_extra or {})
        if not unknown:
            return
        names = ", ".join(unknown)
        if self.settings.strict:
            raise APIError(400, f"unknown field(s) {names}: not part of OpenAI's request schema (this server "
                                "refuses them: serve --strict)", param=unknown[0], code="unknown_parameter")
        log.warning("ignoring request field(s) outside OpenAI's schema: %s (serve --strict refuses them)", names)

    def check_ids(self, rows: list[list[int]], param: str) -> None:
        """Token ids a client sent must be in the model's vocabulary."""
        vocab = self.engine.source.vocab_size
        for k, row in enumerate(rows):
            bad = next((t for t in row if t >= vocab), None)
            if bad is not None:
                raise APIError(400, f"{param}[{k}]: token id {bad} is outside the vocabulary (0..{vocab - 1})",
                               param=param)

    def logit_bias(self, bias: dict[str, float]) -> dict[int, float]:
        """OpenAI's ``logit_bias`` (token-id strings) as token ids, each in the vocabulary."""
        vocab, out = self.engine.source.vocab_size, {}
        for key, value in bias.items():
            if not key.strip().isdigit() or int(key) >= vocab:
                raise APIError(400, f"logit_bias: {key!r} is not a token id of this model (0..{vocab - 1})",
                               param="logit_bias")
            out[int(key)] = value
        return out

    def fits(self, prompt_len: int, param: str = "messages") -> None:
        """A prompt longer than the context is a 400."""
        if prompt_len > self.context:
            raise APIError(400, f"the prompt is {prompt_len} tokens but the model's context is {self.context} "
                                "tokens; shorten it", param=param, code="context_length_exceeded")

    def budget(self, prompt_len: int, requested: int | None, param: str = "messages") -> int:
        """max_tokens as asked, or all the room left; a prompt or request that does not fit is a 400."""
        room, cap = self.context - prompt_len, self.settings.max_tokens
        if room <= 0:
            raise APIError(400, f"the prompt is {prompt_len} tokens but the model's context is {self.context} "
                                "tokens; shorten it", param=param, code="context_length_exceeded")
        if requested is None:
            return min(room, cap or room)
        if cap is not None and requested > cap:
            raise APIError(400, f"max_tokens is {requested} but this server allows at most {cap}", param="max_tokens")
        if requested > room:
            raise APIError(400, f"the model's context is {self.context} tokens: the prompt takes {prompt_len}, "
                                f"leaving {room} for max_tokens={requested}", param="max_tokens",
                           code="context_length_exceeded")
        return requested

    def grammar(self, response_format: ResponseFormat | None, end_ids: frozenset[int]) -> Grammar | None:
        """The grammar ``response_format`` asks replies to follow (None for plain text); a schema the grammar
        cannot take is a 400 naming response_format."""
        if response_format is None or response_format.type == "text":
            return None
        try:
            return response_format_grammar(response_format.openai(), self.tokenizer, end_ids)
        except LmstackError as e:
            raise APIError(400, str(e), param="response_format") from e

    def submit(self, prompts: list[tuple[list[int], int]], body: Sampling, stop_ids: frozenset[int],
               logprobs: int | None, grammar: Grammar | None = None) -> Choices:
        """Queue ``n`` decodings of each (prompt, max_tokens), seeds seed, seed+1, ...: all or none (429 when
        the queue is full). Choice ``k * n + i`` is prompt k's i-th decoding; with ``grammar`` each follows
        it (a constraint of its own)."""
        sample, bias = body.temperature > 0, self.logit_bias(body.logit_bias)
        loop, choices = asyncio.get_running_loop(), Choices(self.engine, [], asyncio.Queue())
        for prompt, max_tokens in prompts:
            for i in range(body.n):
                config = GenerationConfig(max_new_tokens=max_tokens, do_sample=sample,
                                          temperature=body.temperature if sample else 1.0,
                                          top_k=body.top_k if sample else 0, top_p=body.top_p if sample else 1.0,
                                          repetition_penalty=body.repetition_penalty,
                                          frequency_penalty=body.frequency_penalty,
                                          presence_penalty=body.presence_penalty, logit_bias=bias, stop=body.stop,
                                          seed=None if body.seed is None else _wrap_int64(body.seed + i))
                index, put = len(choices.jobs), choices.events.put_nowait
                emit = self.metrics.timed(lambda e, index=index, put=put: loop.call_soon_threadsafe(put, (index, e)))
                choices.jobs.append(Job(prompt, config, emit, stop_ids, logprobs,
                                        constraint=grammar.constraint() if grammar else None))
        try:
            for job in choices.jobs:
                self.engine.submit(job)
        except EngineBusy as e:
            choices.cancel()
            raise APIError(429, str(e), code="queue_full",
                           headers={"Retry-After": str(self.settings.retry_after)}) from e
        return choices

    def token_logprob(self, event: Event) -> TokenLogprob:
        """The chosen token's log-probability and the most likely tokens', in the chat API's form."""
        def entry(token: int, logprob: float) -> dict:
            text = self.tokenizer.decode([token])
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
        return TokenLogprob(**entry(event.token, event.logprob),
                            top_logprobs=[TopLogprob(**entry(t, lp)) for t, lp in event.top or []])


@dataclass
class Choices:
    """The jobs of one API request, and the queue their events arrive on as (choice index, event)."""
    engine: Engine
    jobs: list[Job]
    events: asyncio.Queue

    async def events_until_done(self, request: Request | None = None) -> AsyncIterator[tuple[int, Event]]:
        """Events until every job has finished; with ``request``, stops early when the client disconnects
        (checked whenever a second passes without an event)."""
        open_jobs = len(self.jobs)
        while open_jobs:
            try:
                i, event = await asyncio.wait_for(self.events.get(), timeout=1.0)
            except asyncio.TimeoutError:
                if request is not None and await request.is_disconnected():
                    return
                continue
            yield i, event
            open_jobs -= event.finish is not None

    async def collect(self, request: Request) -> list[Output]:
        """Every choice's whole output; cancels them all if the client goes away meanwhile."""
        outs = [Output() for _ in self.jobs]
        try:
            async for i, event in self.events_until_done(request):
                outs[i].add(event, self.jobs[i].stop_ids)
        finally:
            self.cancel()
        for out in outs:
            check_finish(out.finish, out.error)
        return outs

    def cancel(self) -> None:
        for job in self.jobs:
            self.engine.cancel(job)


@dataclass
class Output:
    """One choice's events gathered: its text, the tokens that carry logprobs (and apart, the end token that
    ended it, if it carries one: the legacy completions logprobs list it, as vLLM's do), how it ended."""
    text: str = ""
    tokens: list[Event] = field(default_factory=list)
    end: Event | None = None
    completion_tokens: int = 0
    finish: str | None = None
    error: str | None = None

    def add(self, event: Event, stop_ids: frozenset[int]) -> None:
        """Gather ``event``; an end token (in ``stop_ids``) is neither returned nor counted in usage."""
        self.text += event.text
        if event.token is not None:
            self.completion_tokens = event.completion_tokens - (event.token in stop_ids)
            if event.logprob is not None and event.token not in stop_ids:
                self.tokens.append(event)
            elif event.logprob is not None:
                self.end = event
        if event.finish:
            self.finish, self.error = event.finish, event.error


def check_finish(finish: str | None, error: str | None) -> None:
    """A choice that ended neither at a stop nor at its length was cancelled or failed: a 500 for the client."""
    if finish not in ("stop", "length"):
        raise APIError(500, error or "the request was cancelled", code="engine_error")


def _wrap_int64(seed: int) -> int:
    """seed + i for the i-th choice, kept in the int64 range."""
    return (seed + 2**63) % 2**64 - 2**63


def usage(prompt_tokens: int, outs: list[Output]) -> Usage:
    completion = sum(o.completion_tokens for o in outs)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)
