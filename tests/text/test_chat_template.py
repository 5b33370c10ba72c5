"""The chat template renders exactly as transformers' apply_chat_template; bad conversations are named."""

from __future__ import annotations

import pytest

from lmstack.errors import LmstackError
from lmstack.text.chat_template import DEFAULT_CHAT_TEMPLATE, assistant_spans, check_messages, render
from lmstack.text.tokenizer import train_bpe

TOOLS = [{"type": "function", "function": {"name": "calculator", "description": "exact arithmetic",
                                           "parameters": {"type": "object",
                                                          "properties": {"expression": {"type": "string"}},
                                                          "required": ["expression"]}}}]
CONVERSATIONS = [
    [{"role": "user", "content": "Where does Anna live?"}, {"role": "assistant", "content": "Anna lives in Kell."}],
    [{"role": "system", "content": "你是服务员。"}, {"role": "user", "content": "我要一份柠檬茶。"},
     {"role": "assistant", "content": "一份柠檬茶，一共是 3 元。"}, {"role": "user", "content": "给您10元。"}],
    [{"role": "user", "content": "What is 17 * 23?"},
     {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
         "name": "calculator", "arguments": "{\"expression\": \"17 * 23\"}"}}]},
     {"role": "tool", "content": "391"}, {"role": "assistant", "content": "17 × 23 = 391 🎉"}],
]


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tok")
    train_bpe(["hello world 你好"] * 10, vocab_size=300).save(path)
    return AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("generation_prompt", [False, True])
@pytest.mark.parametrize("i", range(len(CONVERSATIONS)))
def test_render_matches_transformers(hf_tokenizer, i, generation_prompt):
    messages = CONVERSATIONS[i]
    tools = TOOLS if i == 2 else None
    ours = render(messages, tools=tools, add_generation_prompt=generation_prompt)
    theirs = hf_tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                              add_generation_prompt=generation_prompt)
    assert hf_tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE
    assert ours == theirs


def test_tool_arguments_as_dict_render_as_json():
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "2+2"}}}]}]
    assert ('<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call><|im_end|>'
            in render(messages))


def test_assistant_spans_cover_exactly_the_replies():
    text, spans = assistant_spans(CONVERSATIONS[2], tools=TOOLS)
    pieces = [text[a:b] for a, b in spans]
    assert pieces[0].startswith("<tool_call>{") and pieces[0].endswith("</tool_call><|im_end|>\n")
    assert pieces[1] == "17 × 23 = 391 🎉<|im_end|>\n"
    assert "<|im_start|>assistant\n" not in "".join(pieces)


@pytest.mark.parametrize("messages, needle", [
    ([], "empty"),
    ([{"role": "robot", "content": "hi"}], "unknown role 'robot'"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "messages[1]: a system message"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}], "messages[1]: empty assistant turn"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": "4"}], "messages[1]: a tool message"),
    ([{"role": "user", "content": 3}], "messages[0].content"),
])
def test_bad_conversations_are_named(messages, needle):
    with pytest.raises(LmstackError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        check_messages(messages)

