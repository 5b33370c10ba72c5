"""Who may call the API and how much they may send: the API key check and the request body limit."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request

from lmstack.serve import errors
from lmstack.serve.errors import APIError


def api_key_check(key: str | None) -> Callable[[Request], Awaitable[None]]:
    """A route dependency: with ``key`` set, a request must send ``Authorization: Bearer KEY`` (compared in
    constant time); without one, every request may pass."""

    async def authorize(request: Request) -> None:
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", code="invalid_api_key")

    return authorize


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
