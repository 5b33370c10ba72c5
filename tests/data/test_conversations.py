"""Readers for alpaca, sharegpt and OpenAI-messages data, and the errors bad records get."""

from __future__ import annotations

import json

import pytest

from lmstack.data.conversations import read_conversations, to_conversation
from lmstack.errors import LmstackError


def test_alpaca_with_input_system_and_history():
    c = to_conversation({"instruction": "Translate", "input": "你好", "output": "Hello", "system": "Be brief.",
                         "history": [["Hi", "Hello!"]]})
    assert [m["role"] for m in c["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert c["messages"][3]["content"] == "Translate\n\n你好"


def test_sharegpt_with_function_call_and_observation():
    c = to_conversation({"conversations": [
        {"from": "human", "value": "2+2?"},
        {"from": "function_call", "value": '{"name": "calc", "arguments": {"e": "2+2"}}'},
        {"from": "observation", "value": "4"}, {"from": "gpt", "value": "4"}], "tools": '[{"name": "calc"}]'})
    assert [m["role"] for m in c["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert c["messages"][1]["tool_calls"][0]["function"] == {"name": "calc", "arguments": {"e": "2+2"}}
    assert c["tools"] == [{"name": "calc"}]


def test_files_json_and_jsonl(tmp_path):
    records = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
               {"instruction": "c", "output": "d"}]
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    for name in ("d.json", "d.jsonl"):
        conversations = read_conversations(tmp_path / name)
        assert [c["messages"][-1]["content"] for c in conversations] == ["b", "d"]


@pytest.mark.parametrize("record, needle", [
    ({"instruction": "x"}, r"d.jsonl:2: alpaca record needs a string 'output'"),
    ({"conversations": [{"from": "robot", "value": "x"}]}, r"d.jsonl:2: conversations\[0\]: unknown role 'robot'"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}, "empty assistant turn"),
    ({"text": "x"}, "cannot tell the format"),
])
def test_bad_records_name_file_line_and_field(tmp_path, record, needle):
    good = {"instruction": "a", "output": "b"}
    (tmp_path / "d.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(LmstackError, match=needle):
        read_conversations(tmp_path / "d.jsonl")


def test_real_llamafactory_demo(shared_data):
    conversations = read_conversations(shared_data / "llamafactory_demo" / "alpaca_zh_demo.json")
    assert len(conversations) == 1000
    assert all(c["messages"][-1]["role"] == "assistant" for c in conversations)
