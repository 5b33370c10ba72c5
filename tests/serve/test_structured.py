"""Structured outputs through the ``openai`` client: ``response_format`` (json_object, json_schema) and forced tool
calls follow their schema on a random model, alone, batched with free requests, sampled and streamed."""

from __future__ import annotations

import json
import threading
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from .conftest import TOOL_MESSAGES, TOOLS

HELLO = [{"role": "user", "content": "hello 你好"}]


class Pick(BaseModel):
    colour: Literal["red", "green", "amber"]
    count: int = Field(ge=0, le=99)
    ok: bool
    name: str = Field(max_length=6)


SCHEMA = {"type": "object", "properties": {
    "town": {"type": "string", "maxLength": 8},
    "trades": {"type": "array", "items": {"enum": ["salt", "amber", "wool"]}, "minItems": 1, "maxItems": 3},
    "size": {"type": "integer", "minimum": -5, "maximum": 5},
    "port": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"berths": {"type": "integer",
                                                                                       "minimum": 1,
                                                                                       "maximum": 9}},
                                          "required": ["berths"], "additionalProperties": False}]}},
    "required": ["town", "trades", "size", "port"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "town", "schema": SCHEMA, "strict": True}}


@pytest.fixture(scope="module")
def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live + "/v1", api_key="none", max_retries=0, timeout=60)


def test_parse_returns_a_validated_object(client):
    reply = client.chat.completions.parse(model="tiny", messages=HELLO, response_format=Pick, max_tokens=80,
                                          temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and isinstance(choice.message.parsed, Pick)
    assert Pick.model_validate_json(choice.message.content) == choice.message.parsed


def test_json_schema_holds_for_every_sampled_choice_and_streamed(client):
    reply = client.chat.completions.create(model="tiny", messages=HELLO, response_format=FORMAT, max_tokens=120,
                                           temperature=1.2, n=4, seed=3)
    texts = [c.message.content for c in reply.choices]
    for choice, text in zip(reply.choices, texts):
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(text), SCHEMA)
    assert len(set(texts)) > 1
    chunks = list(client.chat.completions.create(model="tiny", messages=HELLO, response_format=FORMAT,
                                                 max_tokens=120, temperature=1.2, seed=3, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == texts[0]


def test_json_object_and_completions_take_response_format(client, tokenizer):
    close = tokenizer.encode("}")[0]  # a random model writes numbers forever: the bias lets it close an object
    reply = client.chat.completions.create(model="tiny", messages=HELLO, response_format={"type": "json_object"},
                                           max_tokens=150, temperature=0, logit_bias={str(close): 30})
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    completion = client.completions.create(model="tiny", prompt="hello", max_tokens=120, temperature=0,
                                           extra_body={"response_format": FORMAT})
    jsonschema.validate(json.loads(completion.choices[0].text), SCHEMA)


def test_constrained_and_free_requests_batch_together(client):
    free = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=30, temperature=0)
    results: dict[str, list] = {"free": [], "json": []}

    def ask(kind: str) -> None:
        extra = {"response_format": FORMAT} if kind == "json" else {}
        results[kind].append(client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=120 if extra
                                                            else 30, temperature=0, **extra))

    threads = [threading.Thread(target=ask, args=(k,)) for k in ["free", "json"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.choices[0].message.content for r in results["free"]] == [free.choices[0].message.content] * 3
    for r in results["json"]:
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)


def test_forced_tool_calls_follow_the_parameters_schema(client):
    params = {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 10},
                                               "digits": {"type": "integer", "minimum": 0, "maximum": 12}},
              "required": ["expression", "digits"], "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": params}},
             {"type": "function", "function": {"name": "clock", "parameters": {
                 "type": "object", "properties": {"zone": {"enum": ["utc", "local"]}}, "required": ["zone"]}}}]
    for choice in ({"type": "function", "function": {"name": "clock"}}, "required"):
        reply = client.chat.completions.create(model="tiny", messages=HELLO, tools=tools, tool_choice=choice,
                                               max_tokens=80, temperature=0)
        call = reply.choices[0].message.tool_calls[0]
        assert reply.choices[0].finish_reason == "tool_calls"
        schema = next(t["function"]["parameters"] for t in tools if t["function"]["name"] == call.function.name)
        jsonschema.validate(json.loads(call.function.arguments), schema)
        if choice != "required":
            assert call.function.name == "clock"
    chunks = list(client.chat.completions.create(model="tiny", messages=TOOL_MESSAGES, tools=TOOLS,
                                                 tool_choice="required", max_tokens=80, temperature=0, stream=True))
    calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [t.function.name for t in calls] == ["calculator"] and json.loads(calls[0].function.arguments)


@pytest.mark.parametrize("fmt,words", [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
        "a": {"type": "string", "format": "made-up-format"}}}}}, "response_format"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strange"}}}, "response_format"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "if": {"required": ["a"]},
                                                                      "then": {}}}}, "'if', 'then'"),
])
def test_a_schema_the_grammar_cannot_take_is_a_400_naming_it(client, fmt, words):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny", messages=HELLO, response_format=fmt, max_tokens=5)
    assert refused.value.body["param"] == "response_format" and words in refused.value.body["message"]
