"""Readers for instruction-tuning data: alpaca, sharegpt and OpenAI ``messages``, in .json or .jsonl.

Every record becomes one conversation, ``{"messages": [...], "tools": [...] | None}``, with OpenAI roles
(``system``, ``user``, ``assistant``, ``tool``), which the chat template renders:

- alpaca (Taori et al. 2023): ``instruction``, optional ``input`` (appended after a blank line), ``output``;
  optional ``system`` and ``history`` (``[[user, assistant], ...]`` before the instruction), as LLaMA-Factory reads it.
- sharegpt: ``conversations`` of ``{"from", "value"}`` with ``human``/``gpt``/``system``/``function_call``
  (a JSON ``{"name", "arguments"}``)/``observation``; optional ``system`` and ``tools``.
- openai: ``messages`` as the chat completions API takes them; optional ``tools``.

Fine-tuning also reads trl's non-conversational **prompt-completion** records, ``{"prompt", "completion"}``
strings, kept as they are (``{"prompt", "completion"}``: no chat template; ``adapt.data`` encodes the two parts
separately, as an evaluation harness scores a continuation, with the loss on the completion). Readers of
conversations only (``chat-eval``) refuse them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal
from collections.abc import Iterator

from lmstack.data.files import read_json, read_jsonl
from lmstack.text.chat_template import check_messages
from lmstack.errors import LmstackError

Format = Literal["auto", "alpaca", "sharegpt", "openai", "completion"]
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "observation": "tool", "tool": "tool", "function_call": "assistant"}


def read_conversations(path: str | Path, format: Format = "auto", completions: bool = False) -> list[dict]:
    """Every record of a .json (a list of records) or .jsonl file as a checked conversation (or, with
    ``completions``, a prompt-completion record as it is)."""
    path = Path(path)
    out = []
    for where, record in records(path):
        try:
            conversation = to_conversation(record, format)
            if "messages" not in conversation and not completions:
                raise LmstackError("a prompt-completion record, but this command needs a conversation (messages)")
            if "messages" in conversation:
                check_messages(conversation["messages"])
        except LmstackError as e:
            raise LmstackError(f"{where}: {e}") from None
        out.append(conversation)
    if not out:
        raise LmstackError(f"{path}: no records")
    return out


KEPT = ("kind", "lang")  # labels a record may carry (the synthetic data's task and language), kept for reports


def to_conversation(record: dict, format: Format = "auto") -> dict:
    """One record in any supported format -> ``{"messages", "tools"}`` (plus ``kind``/``lang`` when present)."""
    if not isinstance(record, dict):
        raise LmstackError("expected a JSON object")
    kind = format if format != "auto" else detect(record)
    return _READERS[kind](record) | {k: record[k] for k in KEPT if k in record}


def detect(record: dict) -> str:
    for kind, key in (("openai", "messages"), ("sharegpt", "conversations"), ("alpaca", "instruction"),
                      ("completion", "completion")):
        if key in record:
            return kind
    raise LmstackError(f"cannot tell the format from the fields {sorted(record)}: expected 'messages' (openai), "
                       "'conversations' (sharegpt), 'instruction' + 'output' (alpaca) or 'prompt' + 'completion'")


def _alpaca(record: dict) -> dict:
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise LmstackError(f"alpaca record needs a string '{key}'")
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    for turn in record.get("history") or []:
        if not (isinstance(turn, list) and len(turn) == 2):
            raise LmstackError("alpaca 'history' must be a list of [user, assistant] pairs")
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
    return {"messages": messages, "tools": None}


def _sharegpt(record: dict) -> dict:
    turns = record.get("conversations")
    if not isinstance(turns, list):
        raise LmstackError("sharegpt record needs a list 'conversations'")
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise LmstackError(f"conversations[{i}]: expected an object with 'from' and 'value'")
        role = SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            raise LmstackError(f"conversations[{i}]: unknown role {turn['from']!r} "
                               f"(expected one of {', '.join(SHAREGPT_ROLES)})")
        if turn["from"] == "function_call":
            messages.append({"role": "assistant", "content": "", "tool_calls": [_function_call(turn["value"], i)]})
        else:
            messages.append({"role": role, "content": turn["value"]})
    return {"messages": messages, "tools": _tools(record.get("tools"))}


def _openai(record: dict) -> dict:
    if not isinstance(record.get("messages"), list):
        raise LmstackError("openai record needs a list 'messages'")
    return {"messages": record["messages"], "tools": _tools(record.get("tools"))}


def _completion(record: dict) -> dict:
    for key in ("prompt", "completion"):
        if not isinstance(record.get(key), str):
            raise LmstackError(f"prompt-completion record needs a string '{key}'")
    return {"prompt": record["prompt"], "completion": record["completion"]}


def _function_call(value: str, i: int) -> dict:
    try:
        call = json.loads(value) if isinstance(value, str) else value
        return {"type": "function", "function": {"name": call["name"], "arguments": call.get("arguments", {})}}
    except (json.JSONDecodeError, KeyError, TypeError):
        raise LmstackError(f"conversations[{i}]: a function_call value must be JSON with "
                           "'name' and 'arguments'") from None


def _tools(tools) -> list[dict] | None:
    """``tools`` as a list (sharegpt files often store it as a JSON string)."""
    if isinstance(tools, str):
        tools = json.loads(tools) if tools.strip() else None
    if tools is not None and not isinstance(tools, list):
        raise LmstackError("'tools' must be a list of tool schemas")
    return tools or None


_READERS = {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai, "completion": _completion}


def records(path: Path) -> Iterator[tuple[str, dict]]:
    """(``file:line`` or ``file[i]``, record) for a .jsonl or .json file; lone surrogate escapes (``"\\ud800"``)
    become U+FFFD, counted in a warning (``lmstack.data.files``: one policy for every reader)."""
    if path.suffix == ".jsonl":
        yield from read_jsonl(path)
        return
    data = read_json(path)
    if not isinstance(data, list):
        raise LmstackError(f"{path}: expected a JSON list of records")
    for i, record in enumerate(data):
        yield f"{path}[{i}]", record

