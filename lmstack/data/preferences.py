"""Readers for preference data: pairs of answers to one prompt (chosen over rejected), unpaired labelled answers
(KTO), and prompt-only files (PPO / GRPO), in .json or .jsonl.

Every record becomes a ``Preference`` whose ``prompt`` is a list of OpenAI-role messages ending with a user turn
and whose answers are the assistant's reply texts; the chat template renders them later (``lmstack.align.data``).
Formats (``format="auto"`` tells them apart per record):

- ``trl``: ``{"prompt", "chosen", "rejected"}``; each a string (a plain prompt / reply) or a list of messages
  (trl's conversational form: the prompt's messages, and ``[{"role": "assistant", ...}]`` answers).
- ``sharegpt`` (LLaMA-Factory's ``dpo_{en,zh}_demo.json``): ``conversations`` of ``{"from", "value"}`` plus
  ``chosen`` / ``rejected`` as ``{"from": "gpt", "value"}``; optional ``system``.
- ``hh-rlhf`` (Anthropic's ``"\\n\\nHuman: ... \\n\\nAssistant: ..."`` transcripts in ``chosen`` / ``rejected``,
  no ``prompt``): the turns both transcripts share are the prompt, the two last assistant turns the answers.
- ``openai`` (OpenAI's preference fine-tuning JSONL): ``{"input": {"messages": [...]}, "preferred_output":
  [assistant message], "non_preferred_output": [assistant message]}``.

Unpaired (KTO, trl's unpaired form): ``{"prompt", "completion", "label": true|false}``; a paired file read as
unpaired gives both halves (chosen: true, rejected: false). Prompt-only (RL): ``{"prompt": str | messages}``
(or ``messages`` ending with a user turn), every other field kept in ``meta`` for the reward function.
Bad records are one ``LmstackError`` naming ``file:line`` and what is wrong (missing chosen or rejected,
chosen == rejected, an empty prompt ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lmstack.data.conversations import SHAREGPT_ROLES, records, to_conversation
from lmstack.errors import LmstackError
from lmstack.text.chat_template import check_messages

PreferenceFormat = Literal["auto", "trl", "sharegpt", "hh-rlhf", "openai"]


@dataclass(frozen=True)
class Preference:
    """One comparison: ``chosen`` is preferred to ``rejected`` as the assistant's reply to ``prompt``."""
    prompt: list[dict]  # OpenAI-role messages, the last a user turn
    chosen: str
    rejected: str
    where: str  # "file:line", for errors and reports
    meta: dict = field(default_factory=dict)  # other fields of the record (kind, lang ...), kept for reports


@dataclass(frozen=True)
class Unpaired:
    """One labelled answer (KTO): ``completion`` is a desirable (``label``) or undesirable reply to ``prompt``."""
    prompt: list[dict]
    completion: str
    label: bool
    where: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PromptRecord:
    """A prompt to sample answers to (PPO / GRPO); ``meta`` holds what a reward function may check (answer, lang)."""
    prompt: list[dict]
    where: str
    meta: dict = field(default_factory=dict)


def read_preferences(path: str | Path, format: PreferenceFormat = "auto",
                     skipped: list[str] | None = None) -> list[Preference]:
    """Every comparison of a .json (a list of records) or .jsonl file, checked.

    An hh-rlhf transcript whose final assistant turn is empty (the public harmless-base test file has 4: the
    transcript was cut before the answer) cannot be compared and is skipped; ``skipped``, when given, collects
    ``"file:line: why"`` for each. Every other bad record is an error naming its ``file:line``.
    """
    path = Path(path)
    if format not in FORMATS:
        raise LmstackError(f"{path}: unknown preference format {format!r} (expected one of {', '.join(FORMATS)})")
    out = []
    for where, record in records(path):
        try:
            out.append(to_preference(record, where, format))
        except EmptyAnswer as e:
            if skipped is not None:
                skipped.append(f"{where}: {e}")
        except LmstackError as e:
            raise LmstackError(f"{where}: {e}") from None
    if not out:
        raise LmstackError(f"{path}: no preference records")
    return out


def read_unpaired(path: str | Path, skipped: list[str] | None = None) -> list[Unpaired]:
    """Every labelled answer of a file: trl's unpaired ``{"prompt", "completion", "label"}`` records, or both
    halves of each comparison in a paired file (chosen: ``label=True``, rejected: ``False``)."""
    path = Path(path)
    out = []
    for where, record in records(path):
        try:
            if isinstance(record, dict) and "completion" in record:
                out.append(_unpaired(record, where))
                continue
            p = to_preference(record, where)
        except EmptyAnswer as e:
            if skipped is not None:
                skipped.append(f"{where}: {e}")
            continue
        except LmstackError as e:
            raise LmstackError(f"{where}: {e}") from None
        out += [Unpaired(p.prompt, p.chosen, True, where, p.meta), Unpaired(p.prompt, p.rejected, False, where, p.meta)]
    if not out:
        raise LmstackError(f"{path}: no labelled answers")
    return out


def read_prompts(path: str | Path) -> list[PromptRecord]:
    """Every prompt of a file: ``{"prompt": str | messages, ...}``, ``{"messages": [...]}`` ending with a user
    turn, OpenAI's ``{"input": {"messages"}}``, or the prompt of each record of a preference / unpaired file.
    Every other field goes to ``meta`` (what a reward function checks: ``answer``, ``lang`` ...)."""
    path = Path(path)
    out = []
    for where, record in records(path):
        try:
            out.append(to_prompt(record, where))
        except LmstackError as e:
            raise LmstackError(f"{where}: {e}") from None
    if not out:
        raise LmstackError(f"{path}: no prompts")
    return out


FORMATS = ("auto", "trl", "sharegpt", "hh-rlhf", "openai")
PAIRED_KEYS = ("chosen", "rejected", "preferred_output", "non_preferred_output")


class EmptyAnswer(LmstackError):
    """A transcript that ends before its answer (skipped and counted, not an error)."""


def to_preference(record: dict, where: str, format: PreferenceFormat = "auto") -> Preference:
    """One record in any supported format -> a checked ``Preference`` (``where`` is its ``file:line``)."""
    if not isinstance(record, dict):
        raise LmstackError("expected a JSON object")
    kind = format if format != "auto" else detect(record)
    prompt, chosen, rejected, used = _PAIRED[kind](record)
    check_prompt(prompt)
    if chosen == rejected:
        raise LmstackError("chosen and rejected are the same answer")
    return Preference(prompt, chosen, rejected, where, {k: v for k, v in record.items() if k not in used})


def to_prompt(record: dict, where: str) -> PromptRecord:
    """One record of a prompt-only, preference or unpaired file -> its prompt and the record's other fields."""
    if not isinstance(record, dict):
        raise LmstackError("expected a JSON object")
    if any(k in record for k in (*PAIRED_KEYS, "completion")):
        if "completion" in record:
            p = _unpaired(record, where)
        else:
            try:
                p = to_preference(record, where)
            except EmptyAnswer:  # a transcript cut before its answer still has its prompt
                p = Preference(_split_transcripts(record, allow_empty=True)[0], "", "", where,
                               {k: v for k, v in record.items() if k not in ("chosen", "rejected")})
        return PromptRecord(p.prompt, where, p.meta)
    if "prompt" in record:
        prompt, used = prompt_messages(record["prompt"]), {"prompt"}
    elif isinstance(record.get("messages"), list):
        prompt, used = record["messages"], {"messages"}
    elif isinstance(record.get("input"), dict) and "messages" in record["input"]:
        prompt, used = record["input"]["messages"], {"input"}
    else:
        raise LmstackError(f"cannot tell the prompt from the fields {sorted(record)}: expected 'prompt' "
                           "(a string or messages), 'messages' ending with a user turn, or a preference record")
    check_prompt(prompt)
    return PromptRecord(prompt, where, {k: v for k, v in record.items() if k not in used})


def detect(record: dict) -> str:
    """The format of one paired record, from its fields."""
    if "preferred_output" in record or "non_preferred_output" in record:
        return "openai"
    if "conversations" in record:
        return "sharegpt"
    if "completion" in record and "label" in record:
        raise LmstackError("an unpaired record (prompt, completion, label): read it as unpaired data (KTO)")
    if "prompt" not in record and any(isinstance(record.get(k), str) and HH_TURN.search(record[k])
                                      for k in ("chosen", "rejected")):
        return "hh-rlhf"
    if any(k in record for k in ("prompt", "chosen", "rejected")):
        return "trl"
    raise LmstackError(f"cannot tell the format from the fields {sorted(record)}: expected 'prompt' + 'chosen' + "
                       "'rejected' (trl), 'conversations' + 'chosen' + 'rejected' (sharegpt), 'chosen' + 'rejected' "
                       "transcripts (hh-rlhf) or 'input' + 'preferred_output' + 'non_preferred_output' (openai)")


def check_prompt(messages: list[dict]) -> None:
    """A prompt is a valid conversation whose last turn is a non-empty user message."""
    if not isinstance(messages, list):
        raise LmstackError("the prompt must be a string or a list of messages")
    if not messages:
        raise LmstackError("empty prompt")
    check_messages(messages)
    last = messages[-1]
    if last["role"] != "user":
        raise LmstackError(f"the prompt must end with a user turn (its last turn is {last['role']!r})")
    if not last["content"].strip():
        raise LmstackError("empty prompt: the last user turn has no text")


def prompt_messages(prompt) -> list[dict]:
    """A prompt as messages: a string is one user turn; a list is taken as it is (checked by ``check_prompt``)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list):
        return prompt
    raise LmstackError("'prompt' must be a string or a list of messages")


def answer_text(value, field: str) -> str:
    """An answer given as a string, or as one assistant message (trl's conversational form, OpenAI's output list,
    LLaMA-Factory's ``{"from": "gpt", "value"}``); it must not be empty."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        role = value.get("role", SHAREGPT_ROLES.get(value.get("from")))
        if role != "assistant":
            raise LmstackError(f"'{field}' must be an assistant message, not {value.get('role', value.get('from'))!r}")
        value = value.get("content", value.get("value"))
    if value is None:
        raise LmstackError(f"the record has no '{field}' answer")
    if not isinstance(value, str):
        raise LmstackError(f"'{field}' must be a string or one assistant message")
    if not value.strip():
        raise LmstackError(f"'{field}' is empty")
    return value


def _trl(record: dict) -> tuple[list[dict], str, str, set]:
    for key in ("chosen", "rejected"):
        if key not in record:
            raise LmstackError(f"the record has no '{key}' answer (trl records need 'prompt', 'chosen' and 'rejected')")
    if "prompt" not in record:  # trl's implicit prompt: two whole conversations that share all but the last turn
        chosen, rejected = record["chosen"], record["rejected"]
        if not (isinstance(chosen, list) and isinstance(rejected, list) and chosen and rejected):
            raise LmstackError("the record has no 'prompt' (trl records need 'prompt', 'chosen' and 'rejected')")
        prompt, a, b = _shared_prompt(chosen, rejected)
        return prompt, answer_text(a, "chosen"), answer_text(b, "rejected"), {"chosen", "rejected"}
    return (prompt_messages(record["prompt"]), answer_text(record["chosen"], "chosen"),
            answer_text(record["rejected"], "rejected"), {"prompt", "chosen", "rejected"})


def _sharegpt(record: dict) -> tuple[list[dict], str, str, set]:
    for key in ("chosen", "rejected"):
        if key not in record:
            raise LmstackError(f"the record has no '{key}' answer (sharegpt preference records need "
                               "'conversations', 'chosen' and 'rejected')")
    prompt = to_conversation({k: record[k] for k in ("conversations", "system") if k in record}, "sharegpt")
    return (prompt["messages"], answer_text(record["chosen"], "chosen"), answer_text(record["rejected"], "rejected"),
            {"conversations", "system", "chosen", "rejected"})


def _openai(record: dict) -> tuple[list[dict], str, str, set]:
    given = record.get("input")
    if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
        raise LmstackError("an openai preference record needs 'input': {\"messages\": [...]}")
    for key in ("preferred_output", "non_preferred_output"):
        if key not in record:
            raise LmstackError(f"the record has no '{key}' answer")
    return (given["messages"], answer_text(record["preferred_output"], "preferred_output"),
            answer_text(record["non_preferred_output"], "non_preferred_output"),
            {"input", "preferred_output", "non_preferred_output"})


def _hh_rlhf(record: dict) -> tuple[list[dict], str, str, set]:
    prompt, chosen, rejected = _split_transcripts(record)
    return prompt, chosen, rejected, {"chosen", "rejected"}


HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def _split_transcripts(record: dict, allow_empty: bool = False) -> tuple[list[dict], str, str]:
    """hh-rlhf: the turns both transcripts share are the prompt, each one's final assistant turn its answer."""
    turns = []
    for key in ("chosen", "rejected"):
        if not isinstance(record.get(key), str):
            raise LmstackError(f"the record has no '{key}' transcript (hh-rlhf records need 'chosen' and 'rejected' "
                               "strings of '\\n\\nHuman: ... \\n\\nAssistant: ...' turns)")
        turns.append(transcript_turns(record[key], key))
    prompt, chosen, rejected = _shared_prompt(*turns)
    if not allow_empty:
        for key, answer in (("chosen", chosen), ("rejected", rejected)):
            if not answer["content"]:
                raise EmptyAnswer(f"the {key} transcript ends with an empty assistant turn")
    return prompt, chosen["content"], rejected["content"]


def transcript_turns(text: str, field: str) -> list[dict]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b"`` -> messages, each stripped; consecutive turns of one speaker (a quirk
    of the public files: ``"\\n\\nAssistant: x\\n\\nAssistant: y"``) are one turn, joined by a blank line."""
    parts = HH_TURN.split(text)
    if parts[0].strip():
        raise LmstackError(f"'{field}' has text before its first 'Human:' turn: {parts[0][:40]!r}")
    messages: list[dict] = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role, content = HH_ROLES[speaker], content.strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = "\n\n".join(c for c in (messages[-1]["content"], content) if c)
        else:
            messages.append({"role": role, "content": content})
    if not messages:
        raise LmstackError(f"'{field}' has no 'Human:' / 'Assistant:' turns")
    return messages


def _shared_prompt(a: list[dict], b: list[dict]) -> tuple[list[dict], dict, dict]:
    """Two conversations that differ only in their final assistant turn -> (shared prompt, last of a, last of b)."""
    for key, turns in (("chosen", a), ("rejected", b)):
        if not isinstance(turns[-1], dict) or turns[-1].get("role") != "assistant":
            raise LmstackError(f"the {key} conversation must end with an assistant turn")
    if a[:-1] != b[:-1]:
        raise LmstackError(f"chosen ({len(a)} turns) and rejected ({len(b)} turns) differ before their last turn, "
                           "so they share no prompt")
    return a[:-1], a[-1], b[-1]


def _unpaired(record: dict, where: str) -> Unpaired:
    if "prompt" not in record:
        raise LmstackError("an unpaired record needs 'prompt', 'completion' and 'label'")
    prompt = prompt_messages(record["prompt"])
    check_prompt(prompt)
    label = record.get("label")
    if not isinstance(label, bool):
        raise LmstackError(f"'label' must be true or false, got {label!r}")
    completion = answer_text(record["completion"], "completion")
    return Unpaired(prompt, completion, label, where,
                    {k: v for k, v in record.items() if k not in ("prompt", "completion", "label")})


_PAIRED = {"trl": _trl, "sharegpt": _sharegpt, "hh-rlhf": _hh_rlhf, "openai": _openai}
