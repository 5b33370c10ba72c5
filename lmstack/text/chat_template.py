"""Chat templates: a conversation (OpenAI-style messages) rendered to the text a model reads.

The template is Jinja, stored as ``chat_template`` in ``tokenizer_config.json``, and rendered here exactly as
``transformers``' ``apply_chat_template`` renders it (same sandbox, same ``tojson``), so a model lmstack tunes
reads the same text in lmstack, in ``transformers`` and behind any server that honours the file.

The default is ChatML (``<|im_start|>role\\n...<|im_end|>``) with tools: the system turn lists the tools as
JSON, the assistant calls one by writing ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, and a
``tool`` turn carries the result back (``lmstack.text.tool_stream`` reads the calls out of a reply).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lmstack.errors import LmstackError

ROLES = ("system", "user", "assistant", "tool")
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"

DEFAULT_CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- 'Tools (one JSON schema per line):\\n' }}"
    "{%- for tool in tools %}{{- (tool.function if tool.function is defined else tool) | tojson }}{{- '\\n' }}"
    "{%- endfor %}"
    "{{- 'To call a tool, answer <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>.<|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' + (message.content or '') }}"
    "{%- for call in message.tool_calls or [] %}"
    "{%- set f = call.function if call.function is defined else call %}"
    "{{- '<tool_call>{\"name\": ' + f.name | tojson + ', \"arguments\": ' }}"
    "{{- (f.arguments if f.arguments is string else f.arguments | tojson) + '}</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role != 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def render(messages: list[dict], template: str | None = None, tools: list[dict] | None = None,
           add_generation_prompt: bool = False, **variables: Any) -> str:
    """The text of ``messages`` under ``template`` (default: ChatML with tools); checks the messages first.

    ``add_generation_prompt`` appends the opening of an assistant turn, for the model to continue.
    ``variables`` (say ``bos_token``) are passed to the template as ``apply_chat_template`` passes them.
    """
    check_messages(messages)
    try:
        return _compile(template or DEFAULT_CHAT_TEMPLATE).render(
            messages=messages, tools=tools or None, add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.TemplateError as e:
        raise LmstackError(f"chat template: {e}") from e


def assistant_spans(messages: list[dict], template: str | None = None, tools: list[dict] | None = None,
                    **variables: Any) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans the assistant wrote (what fine-tuning learns).

    A span runs from after the assistant header (the generation prompt) to the end of that turn, so it holds
    the reply, its tool calls and the end-of-turn marker. Found by rendering each prefix of the conversation,
    which works for any template that renders a conversation as the concatenation of its turns.
    """
    text = render(messages, template, tools, **variables)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head = render(messages[:i], template, tools, add_generation_prompt=True, **variables) if i else ""
        upto = render(messages[: i + 1], template, tools, **variables)
        if not (text.startswith(upto) and upto.startswith(head)):
            raise LmstackError(f"chat template does not render message {i} as an extension of the ones before it; "
                               "cannot tell which tokens the assistant wrote")
        spans.append((len(head), len(upto)))
    return text, spans


def check_messages(messages: list[dict]) -> None:
    """Raise a one-line error for a conversation no template should render: unknown roles, a system turn
    anywhere but first, an empty assistant turn, a tool turn that answers no call, no turns at all."""
    if not messages:
        raise LmstackError("messages: the conversation is empty")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise LmstackError(f"messages[{i}]: expected an object with 'role' and 'content'")
        role = m["role"]
        if role not in ROLES:
            raise LmstackError(f"messages[{i}]: unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if role == "system" and i:
            raise LmstackError(f"messages[{i}]: a system message may only come first")
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            raise LmstackError(f"messages[{i}].content: expected a string")
        if role == "assistant" and not content and not m.get("tool_calls"):
            raise LmstackError(f"messages[{i}]: empty assistant turn")
        if role in ("system", "user", "tool") and content is None:
            raise LmstackError(f"messages[{i}]: a {role} message needs 'content'")
        if role == "tool" and (i == 0 or messages[i - 1]["role"] not in ("assistant", "tool")):
            raise LmstackError(f"messages[{i}]: a tool message must follow an assistant turn that called a tool")


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    """The environment ``transformers`` renders chat templates in: sandboxed, trim_blocks/lstrip_blocks, and
    its ``tojson`` (no HTML escaping, keys in order), ``raise_exception`` and ``strftime_now``."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise LmstackError(f"chat template: {e.message} (line {e.lineno})") from e
