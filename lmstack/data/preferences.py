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

from dataclasses import dataclass, field
from typing import Literal

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
