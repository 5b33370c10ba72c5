"""``POST /v1/embeddings`` (mean-pooled final hidden states, unit length) and ``GET /v1/models``."""

from __future__ import annotations

import asyncio
import base64

import torch
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from lmstack.serve.backend import Backend
from lmstack.serve.engine import Engine
from lmstack.serve.errors import RESPONSES, APIError
from lmstack.serve.schemas import Embedding, EmbeddingRequest, EmbeddingResponse, ModelCard, ModelList, Usage

EMBED_BATCH = 16


def router(backend: Backend) -> APIRouter:
    routes = APIRouter()

    @routes.get("/v1/models", response_model=ModelList, responses=RESPONSES)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=backend.settings.model_name, created=backend.created,
                                         context_length=backend.context)])

    @routes.post("/v1/embeddings", response_model=EmbeddingResponse, responses=RESPONSES)
    async def embed(body: EmbeddingRequest) -> EmbeddingResponse:
        """Mean-pooled final hidden states, L2-normalised (one vector per input: a text or token ids)."""
        backend.check_model(body.model)
        backend.check_fields(body)
        width = backend.engine.model.config.n_embd
        if body.dimensions is not None and body.dimensions != width:
            raise APIError(400, f"dimensions={body.dimensions}: this model's embeddings have {width} dimensions and "
                                "cannot be shortened (it was not trained to truncate)", param="dimensions")
        backend.check_ids([row for row in body.input if not isinstance(row, str)], "input")
        ids = await run_in_threadpool(lambda: [backend.tokenizer.encode(t) if isinstance(t, str) else t
                                               for t in body.input])
        for i, row in enumerate(ids):
            if not row:
                raise APIError(400, f"input[{i}] is empty", param="input")
            if len(row) > backend.context:
                raise APIError(400, f"input[{i}] is {len(row)} tokens but the model's context is {backend.context}",
                               param="input")
        engine, vectors = backend.engine, []
        for k in range(0, len(ids), EMBED_BATCH):
            batch = ids[k:k + EMBED_BATCH]
            vectors += await asyncio.wrap_future(engine.call(lambda b=batch: embed_rows(engine, b)))
        data = [Embedding(index=i, embedding=_encode_vector(v, body.encoding_format)) for i, v in enumerate(vectors)]
        n = sum(map(len, ids))
        return EmbeddingResponse(data=data, model=backend.settings.model_name,
                                 usage=Usage(prompt_tokens=n, completion_tokens=0, total_tokens=n))

    return routes


def embed_rows(engine: Engine, rows: list[list[int]]) -> list[torch.Tensor]:
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
