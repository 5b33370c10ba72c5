"""The chat page at ``/``: one static HTML file that talks to ``/v1/chat/completions``."""

from __future__ import annotations

from html import escape
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse


def router(model_name: str) -> APIRouter:
    routes = APIRouter()

    @routes.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("lmstack.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{MODEL}}", escape(model_name)))

    return routes
