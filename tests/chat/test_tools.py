"""Built-in tools: the calculator never evaluates code, search finds the passage, the loop feeds results back."""

from __future__ import annotations

import json
import random

import pytest

from lmstack.text.chat_template import render
from lmstack.chat.tools import FolderIndex, calculator, open_index, run_tool, search, tool_loop
from lmstack.tools.calculator import calculate
from lmstack.data.synth import DATASETS, build_world
from lmstack.errors import LmstackError


@pytest.mark.parametrize("expression,value", [
    ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("2 ** 10", 1024), ("-7 / 2", -3.5), ("sqrt(16) + abs(-2)", 6),
    ("round(pi, 2)", 3.14), ("12 × 3 ÷ 4", 9), ("2^3", 8), ("max(1, 5, 3)", 5), ("log(e)", 1),
])
def test_calculator_evaluates_arithmetic(expression, value):
    assert calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')", "(1).__class__", "open('x')", "x + 1", "'a' * 3", "9 ** 9 ** 9",
    "2 ** 1000", "10 ** 99 * 10 ** 99", "1 / 0", "sqrt(-1)", "lambda: 1", "[1, 2]", "1 if 1 else 2", "1" * 201,
    "(" * 100 + "1" + ")" * 100, "True + 1",
])
def test_calculator_refuses_everything_else(expression):
    with pytest.raises(LmstackError):
        calculate(expression)


def test_run_tool_turns_bad_calls_into_text():
    tools = {"calculator": calculator()}
    assert run_tool({"function": {"name": "calculator", "arguments": '{"expression": "6 * 7"}'}}, tools) == "42"
    assert run_tool({"function": {"name": "calculator", "arguments": {"expression": "1/3"}}}, tools) == "0.333333333333"
    assert run_tool({"function": {"name": "weather", "arguments": "{}"}}, tools).startswith("error: no tool")
    assert run_tool({"function": {"name": "calculator", "arguments": "not json"}}, tools).startswith("error:")
    assert run_tool({"function": {"name": "calculator", "arguments": '{"expr": "1"}'}}, tools).startswith("error:")


def test_folder_search_finds_the_passage(tmp_path):
    (tmp_path / "people.md").write_text("Mira Kast lives in Bellport.\n\nJonas Holm is a baker.", encoding="utf-8")
    (tmp_path / "zh.txt").write_text("米拉·卡斯特住在贝尔港。\n\n约纳斯是面包师。", encoding="utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    index = open_index(tmp_path)
    assert isinstance(index, FolderIndex)
    assert index.text(index.search("Where does Mira live?", 1)[0][0]) == "Mira Kast lives in Bellport."
    assert index.text(index.search("谁是面包师", 1)[0][0]) == "约纳斯是面包师。"
    tool = search(index, k=2)
    assert tool.fn(query="baker").startswith("1. Jonas Holm is a baker.")
    assert tool.fn(query="zebra") == "no results"
    with pytest.raises(LmstackError, match="no .txt or .md"):
        FolderIndex(tmp_path / "nothing")


def test_tool_loop_feeds_results_back_until_an_answer():
    seen = []

    def reply(messages):
        seen.append(messages)
        if messages[-1]["role"] == "user":
            return {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}]}
        return {"role": "assistant", "content": f"The answer is {messages[-1]['content']}."}

    added = tool_loop(reply, [{"role": "user", "content": "6 times 7?"}], [calculator()])
    assert [m["role"] for m in added] == ["assistant", "tool", "assistant"]
    assert added[1] == {"role": "tool", "tool_call_id": "c1", "content": "42"}
    assert added[-1]["content"] == "The answer is 42."
    render([{"role": "user", "content": "6 times 7?"}, *added], tools=[calculator().schema()])  # a valid conversation

    def always_calls(messages):
        return {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "calculator", "arguments": '{"expression": "1"}'}}]}

    assert len([m for m in tool_loop(always_calls, [{"role": "user", "content": "?"}], [calculator()], max_steps=3)
                if m["role"] == "assistant"]) == 3


def test_synthetic_tool_conversations():
    world = build_world(0)
    data = DATASETS["tools"](world, random.Random("0:dataset:tools"), 0.1)
    train, test = data["train"], data["test"]
    assert len(train) == 200 and len(test) == 20
    assert not {r["messages"][0]["content"] for r in test} & {r["messages"][0]["content"] for r in train}
    kinds = {(r["kind"], r["lang"]) for r in train}
    assert kinds == {(k, lang) for k in ("calculator", "search", "direct") for lang in ("en", "zh")}
    for r in train:
        render(r["messages"], tools=r["tools"])  # every conversation is one the template accepts
        if r["kind"] == "calculator":
            call, result = r["messages"][1]["tool_calls"][0]["function"], r["messages"][2]["content"]
            assert run_tool({"function": call}, {"calculator": calculator()}) == result
        if r["kind"] == "search":
            query = json.loads(r["messages"][1]["tool_calls"][0]["function"]["arguments"])["query"]
            assert r["entity"] in query and r["messages"][3]["content"] in r["messages"][2]["content"]
