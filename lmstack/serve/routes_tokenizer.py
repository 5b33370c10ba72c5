"""``POST /tokenize``, ``POST /detokenize`` and ``GET /tokenizer_info``: the served tokenizer, as vLLM's server
shapes these endpoints, so a client (lm-evaluation-harness's ``tokenizer_backend=remote``) counts and builds token-id
prompts with the server's own tokenizer instead of loading one.

``/tokenize`` takes a ``prompt`` (``add_special_tokens`` true by default: whatever the tokenizer's post-processor
adds, as ``transformers`` encodes it; special-token strings in the text are those tokens) or chat ``messages``
(rendered and encoded as ``/v1/chat/completions`` encodes them; ``add_generation_prompt`` true by default) and
answers ``{"count", "max_model_len", "tokens"}`` (and ``token_strs`` on request). ``/detokenize`` turns ids back
into text, special tokens included, so ``detokenize(tokenize(x)) == x``. ``/tokenizer_info`` answers the
tokenizer's ``tokenizer_config.json`` fields (``tokenizer_class``, ``bos_token``, ``eos_token``, ``pad_token``,
``model_max_length``, ``chat_template``: the template the server renders with).

The bodies are vLLM's, not OpenAI's (OpenAI has no such endpoints), so they live here rather than in ``schemas``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from lmstack.errors import LmstackError
from lmstack.serve.backend import Backend
from lmstack.serve.errors import RESPONSES, APIError
from lmstack.serve.schemas import Message, Open, Text, Tool


class TokenizeRequest(Open):
    model: str | None = None  # vLLM's clients may leave it out
    prompt: Text | None = None
    messages: list[Message] | None = None
    tools: list[Tool] | None = None
    add_special_tokens: bool | None = None  # default: true for a prompt, false for messages (as vLLM)
    add_generation_prompt: bool = True
    return_token_strs: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send exactly one of prompt or messages")
        return self


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str | None] | None = None


class DetokenizeRequest(Open):
    model: str | None = None
    tokens: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=1_000_000)]


class DetokenizeResponse(BaseModel):
    prompt: str


def router(backend: Backend) -> APIRouter:
    routes = APIRouter()
    tokenizer = backend.tokenizer

    def check(body: Open) -> None:
        if body.model is not None:
            backend.check_model(body.model)
        backend.check_fields(body)

    @routes.post("/tokenize", response_model=TokenizeResponse, responses=RESPONSES)
    async def tokenize(body: TokenizeRequest) -> TokenizeResponse:
        """A prompt's or a conversation's token ids, exactly as the server encodes them."""
        check(body)
        if body.prompt is not None:
            special = True if body.add_special_tokens is None else body.add_special_tokens
            ids = await run_in_threadpool(lambda: encode(backend, body.prompt, special))
        else:
            ids = await run_in_threadpool(lambda: encode_messages(backend, body))
        strs = [tokenizer.id_to_token(i) for i in ids] if body.return_token_strs else None
        return TokenizeResponse(count=len(ids), max_model_len=backend.context, tokens=ids, token_strs=strs)

    @routes.post("/detokenize", response_model=DetokenizeResponse, responses=RESPONSES)
    async def detokenize(body: DetokenizeRequest) -> DetokenizeResponse:
        """Token ids back to text (special tokens included)."""
        check(body)
        backend.check_ids([body.tokens], "tokens")
        return DetokenizeResponse(prompt=await run_in_threadpool(tokenizer.decode, body.tokens))

    @routes.get("/tokenizer_info", responses=RESPONSES)
    async def tokenizer_info() -> dict[str, Any]:
        """The tokenizer's configuration (tokenizer_config.json's fields) and the chat template in use."""
        return info(backend)

    return routes


def encode(backend: Backend, text: str, add_special_tokens: bool) -> list[int]:
    """``text``'s ids as ``transformers`` encodes it (special-token strings recognised; with
    ``add_special_tokens`` what the tokenizer's post-processor frames a sequence with, if anything)."""
    return backend.tokenizer.backend.encode(text, add_special_tokens=add_special_tokens).ids


def encode_messages(backend: Backend, body: TokenizeRequest) -> list[int]:
    """A conversation's ids as the chat route encodes it (message contents never forge special tokens)."""
    messages = [m.plain() for m in body.messages or []]
    tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
    try:
        ids = backend.chat.encode(messages, tools, add_generation_prompt=body.add_generation_prompt)
    except LmstackError as e:
        raise APIError(400, str(e), param="messages") from e
    if body.add_special_tokens:
        prefix, suffix = _framing(backend)
        ids = prefix + ids + suffix
    return ids


def _framing(backend: Backend) -> tuple[list[int], list[int]]:
    """The ids the tokenizer's post-processor puts before and after a sequence (say bos), read off one encoding."""
    backend_tokenizer = backend.tokenizer.backend
    inner = backend_tokenizer.encode("a", add_special_tokens=False).ids
    framed = backend_tokenizer.encode("a", add_special_tokens=True).ids
    at = next(i for i in range(len(framed) - len(inner) + 1) if framed[i:i + len(inner)] == inner)
    return framed[:at], framed[at + len(inner):]


def info(backend: Backend) -> dict[str, Any]:
    """tokenizer_config.json's fields, with the chat template the server renders with (None if it has none)."""
    tokenizer = backend.tokenizer
    out = tokenizer.config()
    try:
        out["chat_template"] = tokenizer.template()
    except LmstackError:
        out["chat_template"] = None
    return out
