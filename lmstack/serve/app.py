"""``lmstack serve``: the OpenAI REST surface over the batching engine, and a chat page at ``/``.

    GET  /v1/models              POST /v1/completions        POST /v1/embeddings
    GET  /health                 POST /v1/chat/completions   GET  /openapi.json
    GET  /metrics                POST /tokenize              POST /detokenize          GET /tokenizer_info

Each route family has its module (routes_chat, routes_completions, embeddings, routes_tokenizer (vLLM's
tokenizer endpoints), metrics_route (Prometheus text), page); ``backend`` queues
their decodings on the engine, ``auth`` checks the key and the body size, ``sse`` streams. Streaming responses
are server-sent events ending in ``data: [DONE]``; a client that goes away cancels its requests, which frees
their cache slots at the next step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from lmstack.devices import resolve_device
from lmstack.serve import embeddings, errors, metrics_route, page, routes_chat, routes_completions, routes_tokenizer
from lmstack.serve.auth import BodyLimit, api_key_check
from lmstack.serve.backend import Backend
from lmstack.serve.engine import Engine
from lmstack.generate.loading import DecodingDtype, load_drafter, load_for_decoding
from lmstack.serve.loading import generation_end_ids
from lmstack.serve.settings import Settings

__all__ = ["Settings", "create_app", "serve"]


def create_app(engine: Engine, settings: Settings) -> FastAPI:
    """The FastAPI app over a started ``engine``."""
    app = FastAPI(title="lmstack", version="0.1.0", description="OpenAI-compatible API over an lmstack model")
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    metrics = metrics_route.ServerMetrics()
    app.add_middleware(metrics_route.CountRequests, metrics=metrics)  # outermost: counts 413s and 401s too
    backend = Backend(engine, settings, metrics)
    auth = [Depends(api_key_check(settings.api_key))]

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": settings.model_name, **engine.stats()}

    app.include_router(page.router(settings.model_name))
    app.include_router(metrics_route.router(metrics, engine))  # no key, like /health (as vLLM's /metrics)
    for routes in (embeddings, routes_chat, routes_completions, routes_tokenizer):
        app.include_router(routes.router(backend), dependencies=auth)
    return app


def serve(*, model: Path, adapter: Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          api_key: str | None = None, cors_origin: list[str] | None = None, name: str | None = None,
          slots: int = 16, max_queue: int = 64, max_tokens: int | None = None, max_body: int = 1_000_000,
          device: str = "auto", dtype: DecodingDtype = "auto", log_level: str = "info", strict: bool = False,
          draft: Path | None = None, prompt_lookup: int = 0, num_draft: int = 4) -> dict:
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
        dtype: weights dtype: auto = bfloat16 where bf16 is native and the model's weights exceed 64 MB, else float32
        log_level: uvicorn's log level (info logs every request)
        strict: refuse request fields outside OpenAI's schema with a 400 (default: ignore them, logging a warning)
        draft: a smaller model directory with the same tokenizer: speculative decoding of every request without a
            JSON schema or logprobs (same greedy text, same sampling distribution, fewer passes of the model)
        prompt_lookup: speculative decoding drafted by n-gram lookup in each request's text, n up to this (0 = off)
        num_draft: tokens drafted per pass (with --draft or --prompt-lookup)
    """

    device = resolve_device(device)
    net, tokenizer = load_for_decoding(model, adapter, device, dtype)
    drafter = load_drafter(tokenizer, draft, prompt_lookup, num_draft, device, dtype)
    engine = Engine(net, tokenizer, slots=slots, max_queue=max_queue, drafter=drafter).start()
    settings = Settings(model_name=name or Path(model).resolve().name, api_key=api_key or os.environ.get(
        "LMSTACK_API_KEY") or None, cors_origins=list(cors_origin or []), max_tokens=max_tokens, max_body=max_body,
        strict=strict, end_ids=generation_end_ids(Path(model)))
    app = create_app(engine, settings)
    start = time.perf_counter()
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        engine.stop()
    return {"model": settings.model_name, "steps": engine.steps, "seconds": round(time.perf_counter() - start, 1)}
