"""``POST /v1/chat/completions``: the conversation encoded by the chat format, each reply ended by the turn-end
tokens and, when tools are offered, read for tool calls by ``ToolCallStream``, whether streamed or not.

A reply follows a grammar when one is asked for: a forced tool call (``tool_choice`` "required" or a named
function) the call format with the function's ``parameters`` schema, otherwise ``response_format``'s."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from lmstack.serve.backend import Backend, Choices, Output, check_finish, usage
from lmstack.serve.errors import RESPONSES, APIError
from lmstack.serve.schemas import (ChatChoice, ChatRequest, ChatResponse, ChoiceLogprobs, ResponseMessage,
                                   ResponseToolCall)
from lmstack.serve.sse import sse
from lmstack.serve.tool_grammar import tool_call_grammar
from lmstack.generate.grammar import Grammar
from lmstack.errors import LmstackError
from lmstack.text.tool_stream import call_opening, reply_reader


def router(backend: Backend) -> APIRouter:
    routes = APIRouter()

    @routes.post("/v1/chat/completions", response_model=ChatResponse, responses=RESPONSES)
    async def chat(body: ChatRequest, request: Request):
        """Chat completions: the conversation through the chat template, replies parsed for tool calls."""
        backend.check_model(body.model)
        backend.check_fields(body)
        messages = [m.plain() for m in body.messages]
        tools, forced = _tools(body)
        prompt = await run_in_threadpool(lambda: backend.chat.encode(messages, tools or None)
                                         + backend.tokenizer.encode(forced))
        max_tokens = backend.budget(len(prompt), body.max_completion_tokens or body.max_tokens)
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        top = (body.top_logprobs or 0) if body.logprobs else None
        grammar = await run_in_threadpool(_grammar, backend, body, tools, forced)
        choices = backend.submit([(prompt, max_tokens)], body, backend.chat.end_ids, top, grammar)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            return sse(_chunks(backend, choices, body, rid, created, forced, bool(tools)), choices.cancel)
        outs, answers = await choices.collect(request), []
        for i, out in enumerate(outs):
            content, calls = reply_reader(bool(tools), forced).read(out.text)
            calls = calls if body.parallel_tool_calls else calls[:1]
            message = ResponseMessage(content=content or (None if calls else ""), tool_calls=[
                ResponseToolCall(id=_call_id(), function=c["function"]) for c in calls] or None)
            logprobs = (ChoiceLogprobs(content=[backend.token_logprob(e) for e in out.tokens])
                        if top is not None else None)
            answers.append(ChatChoice(index=i, message=message, logprobs=logprobs,
                                      finish_reason="tool_calls" if calls else out.finish))
        return ChatResponse(id=rid, created=created, model=backend.settings.model_name, choices=answers,
                            usage=usage(len(prompt), outs))

    return routes


def _grammar(backend: Backend, body: ChatRequest, tools: list[dict], forced: str) -> Grammar | None:
    """What the reply must follow: a forced call's format, else ``response_format`` (compiled off the event loop:
    a first compile takes a moment)."""
    if not forced:
        return backend.grammar(body.response_format, backend.chat.end_ids)
    choice = body.tool_choice
    try:
        return tool_call_grammar(tools, None if choice == "required" else choice.function.name, backend.tokenizer,
                                 backend.chat.end_ids)
    except LmstackError as e:
        raise APIError(400, str(e), param="tools") from e


def _tools(body: ChatRequest) -> tuple[list[dict], str]:
    """The tools offered (none with ``tool_choice: none``) and the call opening a forced choice writes."""
    choice = body.tool_choice
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []] if choice != "none" else []
    if choice is not None and choice != "none" and not tools:
        raise APIError(400, "tool_choice needs tools", param="tool_choice")
    if choice is None or choice in ("none", "auto"):
        return tools, ""
    if choice == "required":
        return tools, call_opening()
    if choice.function.name not in {t["function"]["name"] for t in tools}:
        raise APIError(400, f"tool_choice names an unknown tool {choice.function.name!r}", param="tool_choice")
    return tools, call_opening(choice.function.name)


async def _chunks(backend: Backend, choices: Choices, body: ChatRequest, rid: str, created: int, forced: str,
                  tools: bool) -> AsyncIterator[dict]:
    """The streamed reply: a role chunk per choice, content and tool-call deltas, a finish chunk, then usage."""
    jobs = choices.jobs

    def chunk(index: int, delta: dict, finish: str | None = None, logprobs: list | None = None) -> dict:
        choice = {"index": index, "delta": delta, "finish_reason": finish,
                  "logprobs": None if logprobs is None else {"content": logprobs}}
        return {"id": rid, "object": "chat.completion.chunk", "created": created,
                "model": backend.settings.model_name, "choices": [choice]}

    def call_chunk(index: int, calls: list[dict], first: int) -> dict:
        return chunk(index, {"tool_calls": [{"index": first + k, "id": _call_id(), "type": "function",
                                             "function": c["function"]} for k, c in enumerate(calls)]})

    replies = [reply_reader(tools, forced) for _ in jobs]
    called = [0] * len(jobs)
    for i in range(len(jobs)):
        yield chunk(i, {"role": "assistant", "content": ""})
    outs = [Output() for _ in jobs]
    async for i, event in choices.events_until_done():
        outs[i].add(event, jobs[i].stop_ids)
        text, calls = replies[i].push(event.text)
        logprobs = None
        if jobs[i].logprobs is not None and event.token is not None and event.token not in jobs[i].stop_ids:
            logprobs = [backend.token_logprob(event).model_dump()]
        if text or logprobs:
            yield chunk(i, {"content": text}, logprobs=logprobs)
        if event.finish:
            check_finish(event.finish, event.error)
            rest, more = replies[i].finish()
            if rest:
                yield chunk(i, {"content": rest})
            calls += more
        if not body.parallel_tool_calls:
            calls = calls[:max(0, 1 - called[i])]
        if calls:
            yield call_chunk(i, calls, called[i])
            called[i] += len(calls)
        if event.finish:
            yield chunk(i, {}, "tool_calls" if called[i] else event.finish)
    if body.include_usage:
        yield {"id": rid, "object": "chat.completion.chunk", "created": created, "model": backend.settings.model_name,
               "choices": [], "usage": usage(len(jobs[0].prompt), outs).model_dump()}


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"
