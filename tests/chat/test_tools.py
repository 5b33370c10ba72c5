"""Built-in tools: the calculator never evaluates code, search finds the passage, the loop feeds results back."""

from __future__ import annotations

import json
import math
import random
import time

import pytest
from hypothesis import given, settings, strategies as st

from lmstack.text.chat_template import render
from lmstack.chat.tools import FolderIndex, calculator, open_index, run_tool, search, tool_loop
from lmstack.tools.calculator import MAX_MAGNITUDE, calculate
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


@pytest.mark.parametrize("expression,reason", [
    ("round(1, -10**60)", "ndigits"), ("round(1.5, 10**9)", "ndigits"), ("round(2, 1.5)", "ndigits"),
    ("1e999-1e999", "not a finite"), ("1e999", "not a finite"), ("1e308 * 10", "out of range"),
    ("(-8) ** 0.5", "not a real number"), ("10 ** 60 * 10 ** 60", "out of range"), ("9" * 101, "out of range"),
    ("99 ** 60", "out of range"), ("2.0 ** 64 ** 2", "exponent"), ("exp(1000)", "cannot evaluate"),
    ("0.001 ** -64", "out of range"), ("log(0)", "cannot evaluate"), ("round(1e999 - 1)", "not a finite"),
])
def test_calculator_bounds_every_operation(expression, reason):
    start = time.perf_counter()
    with pytest.raises(LmstackError, match=reason):
        calculate(expression)
    assert time.perf_counter() - start < 0.5


def test_calculator_keeps_bounded_arithmetic():
    assert calculate("round(123456, -3)") == 123000 and calculate("round(2 / 3, 30)") == pytest.approx(2 / 3)
    assert calculate("2 ** 64") == 18446744073709551616 and calculate("10 ** 50 * 10 ** 50") == 10 ** 100
    assert calculate("0.5 ** 64") == 0.5 ** 64 and calculate("(-2) ** 3") == -8


# Expressions from the calculator's grammar, with operands chosen to reach its edges: huge and non-finite
# literals, big exponents and ndigits, every function with one to three arguments, and random text.
_NUMBERS = st.one_of(st.integers(-10 ** 120, 10 ** 120).map(str), st.floats(allow_nan=False).map(repr),
                     st.sampled_from(["1e999", "1e308", "0", "0.0", "-0", "pi", "e", "10**60", "-10**60"]))
_OPS = st.sampled_from(["+", "-", "*", "/", "**", "%", "//", "^", "×", "÷"])
_FUNCS = st.sampled_from(["sqrt", "log", "log10", "exp", "sin", "cos", "tan", "abs", "round", "min", "max"])
_EXPRESSIONS = st.recursive(_NUMBERS, lambda inner: st.one_of(
    st.tuples(inner, _OPS, inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
    st.tuples(st.sampled_from(["-", "+"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
    st.tuples(_FUNCS, st.lists(inner, min_size=1, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
), max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_EXPRESSIONS, st.text(max_size=210)))
def test_calculator_fuzz_returns_a_finite_number_or_a_clear_error_quickly(expression):
    start = time.perf_counter()
    try:
        value = calculate(expression)
    except LmstackError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert type(value) in (int, float) and math.isfinite(value) and abs(value) <= MAX_MAGNITUDE
    assert time.perf_counter() - start < 0.5


def test_run_tool_turns_bad_calls_into_text():
    tools = {"calculator": calculator()}
    assert run_tool({"function": {"name": "calculator", "arguments": '{"expression": "6 * 7"}'}}, tools) == "42"
    assert run_tool({"function": {"name": "calculator", "arguments": {"expression": "1/3"}}}, tools) == "0.333333333333"
    assert run_tool({"function": {"name": "weather", "arguments": "{}"}}, tools).startswith("error: no tool")
    assert run_tool({"function": {"name": "calculator", "arguments": "not json"}}, tools).startswith("error:")
    assert run_tool({"function": {"name": "calculator", "arguments": '{"expr": "1"}'}}, tools).startswith("error:")
    assert run_tool({"function": {"name": "calculator", "arguments": '{"expression": 5}'}}, tools).startswith("error:")
    assert "not a finite" in run_tool({"function": {"name": "calculator",
                                                    "arguments": '{"expression": "1e999-1e999"}'}}, tools)


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
