"""Tool calls read out of a reply: streamed in any pieces, the content and calls are those of the whole reply."""

from __future__ import annotations

import itertools

import pytest

from lmstack.text.tool_stream import ToolCallStream, call_opening, parse_tool_calls, reply_reader

CALL = '<tool_call>{"name": "search", "arguments": {"q": "Kell"}}</tool_call>'
SEARCH = {"type": "function", "function": {"name": "search", "arguments": '{"q": "Kell"}'}}
REPLIES = [  # (reply, content, calls)
    ("Let me check. " + CALL, "Let me check.", [SEARCH]),
    ("  plain 你好 text <tool", "plain 你好 text <tool", []),
    (CALL + "\nFound it: " + CALL + " done. ", "Found it:  done.", [SEARCH, SEARCH]),
    ("<tool_call>not json</tool_call> and <tool_call>[1]</tool_call>",
     "<tool_call>not json</tool_call> and <tool_call>[1]</tool_call>", []),
    ("a <tool_call>{\"name\": \"x\"} never closed", "a <tool_call>{\"name\": \"x\"} never closed", []),
    ("<tool_call><tool_call>" + CALL[len("<tool_call>"):], "<tool_call>" + CALL, []),  # the body is not JSON
    ("<tool_cal" + CALL, "<tool_cal", [SEARCH]),
]


def streamed(pieces: list[str]) -> tuple[str, list[dict]]:
    stream, content, calls = ToolCallStream(), "", []
    for piece in pieces:
        shown, made = stream.push(piece)
        content, calls = content + shown, calls + made
    shown, made = stream.finish()
    return content + shown, calls + made


@pytest.mark.parametrize("reply,content,calls", REPLIES)
def test_any_split_gives_the_content_and_calls_of_the_whole_reply(reply, content, calls):
    assert parse_tool_calls(reply) == (content, calls)
    assert streamed(list(reply)) == (content, calls)  # character by character
    for cut in range(len(reply) + 1):  # every split in two
        assert streamed([reply[:cut], reply[cut:]]) == (content, calls), cut
    for a, b in itertools.combinations(range(0, len(reply) + 1, 7), 2):  # splits in three
        assert streamed([reply[:a], reply[a:b], reply[b:]]) == (content, calls), (a, b)


def test_content_is_shown_as_soon_as_it_cannot_be_a_call():
    stream = ToolCallStream()
    assert stream.push("Hello <tool") == ("Hello", [])  # the space waits for more content; "<tool" may open a call
    assert stream.push("box> ") == (" <toolbox>", [])
    assert stream.push(CALL[:20]) == ("", [])
    assert stream.push(CALL[20:] + " after") == ("  after", [SEARCH])  # the call as soon as it closes
    assert stream.push(" <tool") == ("", [])
    assert stream.finish() == (" <tool", [])  # a prefix that never became a call is released at the end


def test_a_forced_opening_and_replies_without_tools():
    reader = reply_reader(True, call_opening("search"))
    assert reader.read('{"q": "Kell"}}</tool_call>') == ("", [SEARCH])
    assert reply_reader(True, call_opening()).read('{"name": "search", "arguments": {"q": "Kell"}}</tool_call>') \
        == ("", [SEARCH])
    plain = reply_reader(False)
    assert plain.push("  " + CALL) == ("  " + CALL, []) and plain.finish() == ("", [])
