"""Conversations: messages, the chat template that renders them, and tool calls in the model's text."""

from lmstack.chat.template import DEFAULT_CHAT_TEMPLATE, assistant_spans, parse_tool_calls, render

__all__ = ["DEFAULT_CHAT_TEMPLATE", "assistant_spans", "parse_tool_calls", "render"]
