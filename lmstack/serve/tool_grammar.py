"""The grammar a forced tool call follows (``tool_choice`` "required" or a named function), as vLLM constrains
it: after the call's opening that the chat route writes for the model, the function's name (for "required",
any offered tool's), ``arguments`` valid under that function's ``parameters`` schema, the call's close
(``text.tool_stream``'s format) and then the turn's end."""

from __future__ import annotations

import json
from collections.abc import Collection

from lmstack.generate.grammar import JSON_OPTIONS, Grammar
from lmstack.text.chat_template import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from lmstack.text.tokenizer import Tokenizer
from lmstack.text.tool_stream import call_opening

ANY_OBJECT = {"type": "object"}


def tool_call_grammar(tools: list[dict], name: str | None, tokenizer: Tokenizer, end_ids: Collection[int]) -> Grammar:
    """The rest of a call to ``name`` after ``call_opening(name)``, or with ``name`` None of a call to any of
    ``tools`` after ``call_opening()``; a ``parameters`` schema the grammar cannot take is an error naming it."""
    specs = {t["function"]["name"]: t["function"].get("parameters") or ANY_OBJECT for t in tools}
    close = _literal("}" + TOOL_CALL_CLOSE)
    if name is not None:
        rules = [f"start: {_arguments(specs[name])} {close}"]
    else:
        calls = [f"call_{i}: {_literal(call_opening(n)[len(TOOL_CALL_OPEN):])} {_arguments(s)} {close}"
                 for i, (n, s) in enumerate(specs.items())]
        rules = ["start: " + " | ".join(f"call_{i}" for i in range(len(calls))), *calls]
    return Grammar.from_lark("\n".join(rules), tokenizer, end_ids, where="tools: a function's parameters schema")


def _arguments(schema: dict) -> str:
    """An embedded JSON schema (compact JSON, as ``response_format`` writes it)."""
    return "%json " + json.dumps({**schema, "x-guidance": JSON_OPTIONS}, ensure_ascii=False)


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
