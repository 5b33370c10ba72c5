"""Reading tool calls out of an assistant's reply, as it streams or all at once.

A reply is plain content with calls written in it as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
(the form the chat template renders). ``ToolCallStream`` is fed the reply in pieces and releases the content
as soon as it is sure it is content: text that may be the start of ``<tool_call>`` is held back until it is
clear, an opened call is held until it closes, and a closed call is returned then. A call whose body is not a
JSON object with a string ``name`` is content after all. However the reply is split, the content and calls
are those of the whole reply (``parse_tool_calls``); the content is stripped of surrounding whitespace.
"""

from __future__ import annotations

import json

from lmstack.text.chat_template import TOOL_CALL_CLOSE, TOOL_CALL_OPEN


class ToolCallStream:
    """Feed a reply with ``push``, end with ``finish``; each returns (content newly released, calls closed)."""

    def __init__(self):
        self.held = ""  # undecided: the start of <tool_call>, or an opened call not yet closed
        self.blank = ""  # whitespace after the released content: shown only once more content follows
        self.started = False  # some content was released (whitespace before it is dropped)

    def push(self, piece: str) -> tuple[str, list[dict]]:
        self.held += piece
        content, calls = [], []
        while True:
            start = self.held.find(TOOL_CALL_OPEN)
            if start < 0:
                keep = _open_prefix(self.held)
                content.append(self._content(self.held[:len(self.held) - keep]))
                self.held = self.held[len(self.held) - keep:]
                break
            content.append(self._content(self.held[:start]))
            self.held = self.held[start:]
            close = self.held.find(TOOL_CALL_CLOSE, len(TOOL_CALL_OPEN))
            if close < 0:
                break
            end = close + len(TOOL_CALL_CLOSE)
            call = _call(self.held[len(TOOL_CALL_OPEN):close])
            if call is None:
                content.append(self._content(self.held[:end]))
            else:
                calls.append(call)
            self.held = self.held[end:]
        return "".join(content), calls

    def finish(self) -> tuple[str, list[dict]]:
        """The end of the reply: whatever is still held (a call never closed) is content."""
        content, self.held, self.blank = self._content(self.held), "", ""
        return content, []

    def read(self, text: str) -> tuple[str, list[dict]]:
        """The rest of the reply at once: ``push(text)`` then ``finish()``, joined."""
        content, calls = self.push(text)
        rest, more = self.finish()
        return content + rest, calls + more

    def _content(self, text: str) -> str:
        """What of the content ``text`` (following the content so far) can be shown: all but trailing whitespace."""
        if not self.started:
            text = text.lstrip()
        text = self.blank + text
        shown = text.rstrip()
        self.blank = text[len(shown):]
        self.started |= bool(shown)
        return shown


class PlainReply:
    """A reply to a conversation without tools: all of it is content, shown as it comes."""

    def push(self, piece: str) -> tuple[str, list[dict]]:
        return piece, []

    def finish(self) -> tuple[str, list[dict]]:
        return "", []

    def read(self, text: str) -> tuple[str, list[dict]]:
        return text, []


def reply_reader(tools: bool, opening: str = "") -> ToolCallStream | PlainReply:
    """How to read a reply: for tool calls where tools were offered (after the call ``opening`` written for the
    model, if any), as plain text otherwise."""
    if not tools:
        return PlainReply()
    stream = ToolCallStream()
    stream.push(opening)
    return stream


def parse_tool_calls(text: str) -> tuple[str, list[dict]]:
    """Split a whole reply into its content and its tool calls, OpenAI-shaped:
    ``{"type": "function", "function": {"name": ..., "arguments": "<json string>"}}``."""
    return ToolCallStream().read(text)


def call_opening(name: str | None = None) -> str:
    """The start of a tool call, written for the model when a call is required (of the tool ``name``, if given)."""
    return TOOL_CALL_OPEN if name is None else TOOL_CALL_OPEN + '{"name": ' + json.dumps(name) + ', "arguments": '


def _call(body: str) -> dict | None:
    try:
        call = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    args = call.get("arguments", {})
    return {"type": "function", "function": {
        "name": call["name"], "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}}


def _open_prefix(text: str) -> int:
    """Length of the longest end of ``text`` that begins ``<tool_call>`` (and so must wait)."""
    return max((k for k in range(1, len(TOOL_CALL_OPEN)) if text.endswith(TOOL_CALL_OPEN[:k])), default=0)
