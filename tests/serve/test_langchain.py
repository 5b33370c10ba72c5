"""LangChain's OpenAI classes, unchanged, against the app served in this process: ``OpenAI`` (completions; it
always sends frequency_penalty 0, presence_penalty 0, logit_bias {}...) and ``ChatOpenAI`` (invoke, stream,
bind_tools, with_structured_output by json_schema and by function calling)."""

from __future__ import annotations

import json
import os
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from .conftest import TOOL_MESSAGES, TOOLS

os.environ["LANGCHAIN_TRACING_V2"] = "false"
langchain_openai = pytest.importorskip("langchain_openai")


class Verdict(BaseModel):
    """A judgement with a bounded shape, so a random model finishes it."""
    label: Literal["yes", "no", "unsure"]
    score: int = Field(ge=0, le=10)
    note: str = Field(max_length=8)


@pytest.fixture(scope="module")
def kw(live) -> dict:
    return {"base_url": live + "/v1", "api_key": "none", "model": "tiny", "max_retries": 0, "timeout": 60}


def test_completion_class_invokes_and_streams(kw, live):
    llm = langchain_openai.OpenAI(**kw, max_tokens=12, temperature=0)
    text = llm.invoke("hello")
    direct = openai.OpenAI(base_url=live + "/v1", api_key="none").completions.create(
        model="tiny", prompt="hello", max_tokens=12, temperature=0)
    assert text == direct.choices[0].text
    assert "".join(llm.stream("hello")) == text
    assert llm.batch(["hello", "凯尔河镇"])[0] == text


def test_chat_class_invokes_streams_and_calls_tools(kw):
    chat = langchain_openai.ChatOpenAI(**kw, max_tokens=12, temperature=0)
    reply = chat.invoke("hello 你好")
    assert isinstance(reply.content, str) and reply.usage_metadata["output_tokens"] <= 12
    assert "".join(c.content for c in chat.stream("hello 你好")) == reply.content
    tooled = langchain_openai.ChatOpenAI(**kw, temperature=0).bind_tools([TOOLS[0]])
    call = tooled.invoke(TOOL_MESSAGES)
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [("calculator", {"expression": "2 + 2"})]


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output_returns_a_validated_object(kw, method):
    chat = langchain_openai.ChatOpenAI(**kw, max_tokens=80, temperature=0)
    structured = chat.with_structured_output(Verdict, method=method, include_raw=True)
    out = structured.invoke("Is Kell a river town?")
    assert out["parsing_error"] is None and isinstance(out["parsed"], Verdict)
    raw = out["raw"]
    body = raw.tool_calls[0]["args"] if method == "function_calling" else json.loads(raw.content)
    assert Verdict.model_validate(body) == out["parsed"]
