"""Server-sent events: how a streaming response reaches the client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse

from lmstack.serve import errors
from lmstack.serve.errors import APIError


def sse(chunks: AsyncIterator[dict], on_close: Callable[[], None]) -> StreamingResponse:
    """One ``data:`` line per chunk, then ``data: [DONE]``; an error mid-stream is sent as an error chunk.
    ``on_close`` runs however the stream ends (finished, failed, or the client gone)."""

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
