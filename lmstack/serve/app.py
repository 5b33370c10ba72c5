"""``lmstack serve``: the OpenAI REST surface over the batching engine, and a chat page at ``/``.

    GET  /v1/models              POST /v1/completions        POST /v1/embeddings
    GET  /health                 POST /v1/chat/completions   GET  /openapi.json

The asyncio side only validates, tokenizes, queues and streams; the model runs in the engine's thread.
Streaming responses are server-sent events ending in ``data: [DONE]``; a client that goes away cancels its
requests, which frees their cache slots at the next step.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from html import escape
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lmstack.text.chat_template import TOOL_CALL_OPEN, parse_tool_calls
from lmstack.text.tokenizer import Tokenizer
from lmstack.devices import resolve_device
from lmstack.generate.config import GenerationConfig
from lmstack.serve import errors
from lmstack.serve.engine import Engine, EngineBusy, Event
from lmstack.serve.engine import Request as Job
from lmstack.serve.errors import APIError
from lmstack.serve.prompt import encode_chat, end_ids, load_for_serving
from lmstack.serve.schemas import (ChatChoice, ChatRequest, ChatResponse, ChoiceLogprobs, CompletionChoice,
                                   CompletionLogprobs, CompletionRequest, CompletionResponse, Embedding,
                                   EmbeddingRequest, EmbeddingResponse, ErrorResponse, ModelCard, ModelList,
                                   ResponseMessage, ResponseToolCall, Sampling, TokenLogprob, TopLogprob, Usage)

ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 429)}
EMBED_BATCH = 16


@dataclass
class Settings:
    """What an operator configures; the defaults suit a laptop and a public-facing box alike."""
    model_name: str
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_tokens: int | None = None  # cap on max_tokens per request (None: the context)
    max_body: int = 1_000_000  # bytes
    retry_after: int = 1  # seconds, sent with 429


def create_app(engine: Engine, settings: Settings) -> FastAPI:
    """The FastAPI app over a started ``engine``."""
    app = FastAPI(title="lmstack", version="0.1.0", description="OpenAI-compatible API over an lmstack model")
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    api = Api(engine, settings)
    auth = [Depends(api.authorize)]
    app.get("/health")(api.health)
    app.get("/", response_class=HTMLResponse, include_in_schema=False)(api.page)
    app.get("/v1/models", response_model=ModelList, dependencies=auth, responses=ERRORS)(api.models)
    app.post("/v1/chat/completions", response_model=ChatResponse, dependencies=auth, responses=ERRORS)(api.chat)
    app.post("/v1/completions", response_model=CompletionResponse, dependencies=auth, responses=ERRORS)(api.complete)
    app.post("/v1/embeddings", response_model=EmbeddingResponse, dependencies=auth, responses=ERRORS)(api.embed)
    return app


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` (declared or streamed) gets 413 before any route runs."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        body, more, disconnect = [], True, None
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnect = message
                break
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
            if sum(map(len, body)) > self.max_bytes:
                return await self._refuse(scope, receive, send)
        replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}]

        async def receive_again():
            return replay.pop() if replay else (disconnect or await receive())

        await self.app(scope, receive_again, send)

    async def _refuse(self, scope, receive, send) -> None:
        response = errors.error_response(413, f"the request body is larger than {self.max_bytes} bytes",
                                         code="body_too_large")
        await response(scope, receive, send)


class Api:
    """The route handlers, over one engine and one tokenizer."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine, self.settings = engine, settings
        self.tokenizer: Tokenizer = engine.tokenizer
        self.context = engine.max_len
        self.created = int(time.time())

    async def authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", code="invalid_api_key")

    async def health(self) -> dict:
        return {"status": "ok", "model": self.settings.model_name, **self.engine.stats()}

    async def page(self) -> HTMLResponse:
        html = resources.files("lmstack.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{MODEL}}", escape(self.settings.model_name)))

    async def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.settings.model_name, created=self.created,
                                         context_length=self.context)])

    # ------------------------------------------------------------------------------------ chat

    async def chat(self, body: ChatRequest, request: Request):
        """Chat completions: the conversation through the chat template, replies parsed for tool calls."""
        self._check_model(body.model)
        messages = [m.plain() for m in body.messages]
        choice = body.tool_choice
        tools = [t.model_dump(exclude_none=True) for t in body.tools or []] if choice != "none" else []
        if choice is not None and choice != "none" and not tools:
            raise APIError(400, "tool_choice needs tools", param="tool_choice")
        if not isinstance(choice, str) and choice is not None and choice.function.name not in {
                t["function"]["name"] for t in tools}:
            raise APIError(400, f"tool_choice names an unknown tool {choice.function.name!r}", param="tool_choice")
        forced = _forced_call(choice)
        prompt = await run_in_threadpool(lambda: encode_chat(self.tokenizer, messages, tools or None)
                                         + self.tokenizer.encode(forced))
        max_tokens = self._budget(len(prompt), body.max_completion_tokens or body.max_tokens)
        top = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        choices = self._submit([(prompt, max_tokens)], body, end_ids(self.tokenizer, chat=True), top)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            chunks = self._chat_chunks(choices, body, rid, created, forced, bool(tools))
            return _sse(chunks, lambda: self._cancel(choices))
        outs = await self._collect(choices, request)
        answers = []
        for i, out in enumerate(outs):
            content, calls = parse_tool_calls(forced + out.text) if tools else (out.text, [])
            message = ResponseMessage(content=content or (None if calls else ""), tool_calls=[
                ResponseToolCall(id=_call_id(), function=c["function"]) for c in calls] or None)
            logprobs = ChoiceLogprobs(content=[self._token_logprob(e) for e in out.tokens]) if top is not None else None
            answers.append(ChatChoice(index=i, message=message, logprobs=logprobs,
                                      finish_reason="tool_calls" if calls else out.finish))
        return ChatResponse(id=rid, created=created, model=self.settings.model_name, choices=answers,
                            usage=_usage(len(prompt), outs))

    async def _chat_chunks(self, choices: _Choices, body: ChatRequest, rid: str, created: int, forced: str,
                           tools: bool) -> AsyncIterator[dict]:
        jobs = choices.jobs
        def chunk(index: int, delta: dict, finish: str | None = None, logprobs: list | None = None) -> dict:
            choice = {"index": index, "delta": delta, "finish_reason": finish,
                      "logprobs": None if logprobs is None else {"content": logprobs}}
            return {"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": self.settings.model_name, "choices": [choice]}

        holds = [_ToolCallHold(forced) if tools else None for _ in jobs]
        for i in range(len(jobs)):
            yield chunk(i, {"role": "assistant", "content": ""})
        outs: list[_Output] = [_Output() for _ in jobs]
        async for i, event in choices.events_until_done():
            out, hold = outs[i], holds[i]
            out.add(event, jobs[i].stop_ids)
            text = hold.push(event.text) if hold else event.text
            logprobs = None
            if jobs[i].logprobs is not None and event.token is not None and event.token not in jobs[i].stop_ids:
                logprobs = [self._token_logprob(event).model_dump()]
            if text or logprobs:
                yield chunk(i, {"content": text}, logprobs=logprobs)
            if event.finish:
                if event.finish not in ("stop", "length"):
                    raise APIError(500, event.error or "the request was cancelled", code="engine_error")
                finish, calls = event.finish, []
                if hold:
                    rest, calls = hold.finish()
                    if rest:
                        yield chunk(i, {"content": rest})
                if calls:
                    finish = "tool_calls"
                    yield chunk(i, {"tool_calls": [{"index": k, "id": _call_id(), "type": "function",
                                                    "function": c["function"]} for k, c in enumerate(calls)]})
                yield chunk(i, {}, finish)
        if body.stream_options and body.stream_options.include_usage:
            yield {"id": rid, "object": "chat.completion.chunk", "created": created, "model": self.settings.model_name,
                   "choices": [], "usage": _usage(len(jobs[0].prompt), outs).model_dump()}

    # ------------------------------------------------------------------------------------ completions

    async def complete(self, body: CompletionRequest, request: Request):
        """Text completions: each prompt continued as it is (special-token strings count as such)."""
        self._check_model(body.model)
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        start = [self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id]
        prompts = await run_in_threadpool(lambda: [self.tokenizer.encode(t) or start for t in texts])
        if body.n * len(prompts) > 64:
            raise APIError(400, "n times the number of prompts may be at most 64", param="n")
        budgets = [self._budget(len(p), body.max_tokens) for p in prompts]
        choices = self._submit(list(zip(prompts, budgets)), body, end_ids(self.tokenizer, chat=False), body.logprobs)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return _sse(self._completion_chunks(choices, rid, created), lambda: self._cancel(choices))
        outs = await self._collect(choices, request)
        answers = [CompletionChoice(index=i, text=out.text, finish_reason=out.finish,
                                    logprobs=self._completion_logprobs(out) if body.logprobs is not None else None)
                   for i, out in enumerate(outs)]
        usage = Usage(prompt_tokens=sum(map(len, prompts)),
                      completion_tokens=sum(o.completion_tokens for o in outs), total_tokens=0)
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        return CompletionResponse(id=rid, created=created, model=self.settings.model_name, choices=answers,
                                  usage=usage)

    async def _completion_chunks(self, choices: _Choices, rid: str, created: int) -> AsyncIterator[dict]:
        async for i, event in choices.events_until_done():
            if event.finish and event.finish not in ("stop", "length"):
                raise APIError(500, event.error or "the request was cancelled", code="engine_error")
            if event.text or event.finish:
                yield {"id": rid, "object": "text_completion", "created": created, "model": self.settings.model_name,
                       "choices": [{"index": i, "text": event.text, "finish_reason": event.finish, "logprobs": None}]}

    # ------------------------------------------------------------------------------------ embeddings

    async def embed(self, body: EmbeddingRequest) -> EmbeddingResponse:
        """Mean-pooled final hidden states, L2-normalised (one vector per input text)."""
        self._check_model(body.model)
        texts = [body.input] if isinstance(body.input, str) else body.input
        ids = await run_in_threadpool(lambda: [self.tokenizer.encode(t) for t in texts])
        for i, row in enumerate(ids):
            if not row:
                raise APIError(400, f"input[{i}] is empty", param="input")
            if len(row) > self.context:
                raise APIError(400, f"input[{i}] is {len(row)} tokens but the model's context is {self.context}",
                               param="input")
        vectors: list[torch.Tensor] = []
        for k in range(0, len(ids), EMBED_BATCH):
            batch = ids[k:k + EMBED_BATCH]
            vectors += await asyncio.wrap_future(self.engine.call(lambda b=batch: _embed(self.engine, b)))
        data = [Embedding(index=i, embedding=_encode_vector(v, body.encoding_format)) for i, v in enumerate(vectors)]
        n = sum(map(len, ids))
        return EmbeddingResponse(data=data, model=self.settings.model_name,
                                 usage=Usage(prompt_tokens=n, completion_tokens=0, total_tokens=n))

    # ------------------------------------------------------------------------------------ shared

    def _check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise APIError(404, f"the model {name!r} does not exist; this server serves {self.settings.model_name!r}",
                           param="model", code="model_not_found")

    def _budget(self, prompt_len: int, requested: int | None) -> int:
        """max_tokens as asked, or all the room left; a prompt or request that does not fit is a 400."""
        room, cap = self.context - prompt_len, self.settings.max_tokens
        if room <= 0:
            raise APIError(400, f"the prompt is {prompt_len} tokens but the model's context is {self.context} "
                                "tokens; shorten it", param="messages", code="context_length_exceeded")
        if requested is None:
            return min(room, cap or room)
        if cap is not None and requested > cap:
            raise APIError(400, f"max_tokens is {requested} but this server allows at most {cap}", param="max_tokens")
        if requested > room:
            raise APIError(400, f"the model's context is {self.context} tokens: the prompt takes {prompt_len}, "
                                f"leaving {room} for max_tokens={requested}", param="max_tokens",
                           code="context_length_exceeded")
        return requested

    def _submit(self, prompts: list[tuple[list[int], int]], body: Sampling, stop_ids: frozenset[int],
                logprobs: int | None) -> _Choices:
        """Queue ``n`` decodings of each (prompt, max_tokens), seeds seed, seed+1, ...: all or none (429 when
        the queue is full). Choice ``k * n + i`` is prompt k's i-th decoding."""
        sample = body.temperature > 0
        loop, choices = asyncio.get_running_loop(), _Choices([], asyncio.Queue())
        for prompt, max_tokens in prompts:
            for i in range(body.n):
                config = GenerationConfig(max_new_tokens=max_tokens, do_sample=sample,
                                          temperature=body.temperature if sample else 1.0,
                                          top_k=body.top_k if sample else 0, top_p=body.top_p if sample else 1.0,
                                          repetition_penalty=body.repetition_penalty, stop=body.stops(),
                                          seed=None if body.seed is None else body.seed + i)
                index, put = len(choices.jobs), choices.events.put_nowait
                emit = lambda e, index=index, put=put: loop.call_soon_threadsafe(put, (index, e))  # noqa: E731
                choices.jobs.append(Job(prompt, config, emit, stop_ids, logprobs))
        try:
            for job in choices.jobs:
                self.engine.submit(job)
        except EngineBusy as e:
            self._cancel(choices)
            raise APIError(429, str(e), code="queue_full",
                           headers={"Retry-After": str(self.settings.retry_after)}) from e
        return choices

    def _cancel(self, choices: _Choices) -> None:
        for job in choices.jobs:
            self.engine.cancel(job)

    async def _collect(self, choices: _Choices, request: Request) -> list[_Output]:
        """Every choice's whole output; cancels them all if the client goes away meanwhile."""
        outs = [_Output() for _ in choices.jobs]
        try:
            async for i, event in choices.events_until_done(request):
                outs[i].add(event, choices.jobs[i].stop_ids)
        finally:
            self._cancel(choices)
        for out in outs:
            if out.finish not in ("stop", "length"):
                raise APIError(500, out.error or "the request was cancelled", code="engine_error")
        return outs

    def _token_logprob(self, event: Event) -> TokenLogprob:
        def entry(token: int, logprob: float) -> dict:
            text = self.tokenizer.decode([token])
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}
        return TokenLogprob(**entry(event.token, event.logprob),
                            top_logprobs=[TopLogprob(**entry(t, lp)) for t, lp in event.top or []])

    def _completion_logprobs(self, out: _Output) -> CompletionLogprobs:
        tokens, offsets, pos = [], [], 0
        for e in out.tokens:
            tokens.append(self.tokenizer.decode([e.token]))
            offsets.append(pos)
            pos += len(tokens[-1])
        return CompletionLogprobs(tokens=tokens, token_logprobs=[e.logprob for e in out.tokens], text_offset=offsets,
                                  top_logprobs=[{self.tokenizer.decode([t]): lp for t, lp in e.top or []}
                                                for e in out.tokens])


@dataclass
class _Choices:
    """The jobs of one API request, and the queue their events arrive on as (choice index, event)."""
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


@dataclass
class _Output:
    """One choice's events gathered: its text, the tokens that carry logprobs, how it ended."""
    text: str = ""
    tokens: list[Event] = field(default_factory=list)
    completion_tokens: int = 0
    finish: str | None = None
    error: str | None = None

    def add(self, event: Event, stop_ids: frozenset[int]) -> None:
        self.text += event.text
        if event.token is not None:
            self.completion_tokens = event.completion_tokens
            if event.logprob is not None and event.token not in stop_ids:
                self.tokens.append(event)
        if event.finish:
            self.finish, self.error = event.finish, event.error


class _ToolCallHold:
    """Streams a reply's plain text, holding back anything that may be a ``<tool_call>`` until the end."""

    def __init__(self, forced: str):
        self.text, self.shown = forced, 0

    def push(self, piece: str) -> str:
        self.text += piece
        start = self.text.find(TOOL_CALL_OPEN)
        end = start if start >= 0 else len(self.text) - _partial_open(self.text)
        out, self.shown = self.text[self.shown:max(end, self.shown)], max(end, self.shown)
        return out

    def finish(self) -> tuple[str, list[dict]]:
        """What is left to show, and the tool calls."""
        content, calls = parse_tool_calls(self.text)
        if not calls:
            return self.text[self.shown:], []
        shown = self.text[:self.shown].strip()
        return (content[len(shown):] if content.startswith(shown) else ""), calls


def _partial_open(text: str) -> int:
    return max((k for k in range(1, len(TOOL_CALL_OPEN)) if text.endswith(TOOL_CALL_OPEN[:k])), default=0)


def _forced_call(choice) -> str:
    """The start of a tool call written for the model when ``tool_choice`` demands one."""
    if choice == "required":
        return TOOL_CALL_OPEN
    if choice is None or isinstance(choice, str):
        return ""
    return TOOL_CALL_OPEN + '{"name": ' + json.dumps(choice.function.name) + ', "arguments": '


def _sse(chunks: AsyncIterator[dict], on_close: Callable[[], None]) -> StreamingResponse:
    """Server-sent events: one ``data:`` line per chunk, then ``data: [DONE]``; ``on_close`` runs however the
    stream ends (finished, failed, or the client gone)."""

    async def lines() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except APIError as e:
            yield f"data: {json.dumps(errors.error_body(e.status, e.message, e.param, e.code))}\n\n"
        finally:
            on_close()
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _usage(prompt_tokens: int, outs: list[_Output]) -> Usage:
    completion = sum(o.completion_tokens for o in outs)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _embed(engine: Engine, rows: list[list[int]]) -> list[torch.Tensor]:
    """Runs on the engine thread: right-padded batch, mean over real tokens, unit length."""
    model, device = engine.model, engine.device
    T = max(map(len, rows))
    idx = torch.zeros(len(rows), T, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), T, dtype=torch.bool, device=device)
    for r, row in enumerate(rows):
        idx[r, :len(row)] = torch.tensor(row, device=device)
        mask[r, :len(row)] = True
    states = model.hidden_states(model.tok_emb(idx), key_mask=mask).float()
    mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return list(torch.nn.functional.normalize(mean, dim=-1).cpu())


def _encode_vector(v: torch.Tensor, fmt: str) -> list[float] | str:
    return base64.b64encode(v.numpy().astype("<f4").tobytes()).decode() if fmt == "base64" else v.tolist()


def serve(*, model: Path, adapter: Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          api_key: str | None = None, cors_origin: list[str] | None = None, name: str | None = None,
          slots: int = 16, max_queue: int = 64, max_tokens: int | None = None, max_body: int = 1_000_000,
          device: str = "auto", log_level: str = "info") -> dict:
    """Serve a model directory over the OpenAI REST API, with a chat page at /.

    Args:
        model: model directory (config.json, model.safetensors, tokenizer.json)
        adapter: adapter directory to apply on top of the model
        host: interface to bind (127.0.0.1: this machine only)
        port: TCP port
        api_key: require 'Authorization: Bearer KEY' (default: the LMSTACK_API_KEY environment variable, if set)
        cors_origin: origins allowed to call the API from a browser (CORS is off without one)
        name: the model id clients send (default: the model directory's name)
        slots: requests decoded together (one KV-cache slot each)
        max_queue: requests waiting for a slot before new ones get 429
        max_tokens: the most new tokens one request may ask for (default: the context)
        max_body: the largest request body, in bytes
        device: cpu, cuda, or auto
        log_level: uvicorn's log level (info logs every request)
    """
    import uvicorn

    net, tokenizer = load_for_serving(model, adapter, resolve_device(device))
    engine = Engine(net, tokenizer, slots=slots, max_queue=max_queue).start()
    settings = Settings(model_name=name or Path(model).resolve().name, api_key=api_key or os.environ.get(
        "LMSTACK_API_KEY") or None, cors_origins=list(cors_origin or []), max_tokens=max_tokens, max_body=max_body)
    app = create_app(engine, settings)
    start = time.perf_counter()
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        engine.stop()
    return {"model": settings.model_name, "steps": engine.steps, "seconds": round(time.perf_counter() - start, 1)}

