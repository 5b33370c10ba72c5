"""Conversations to token ids, the one way every chat user (serve, chat, chat-eval, ask, generate --chat) does it.

A conversation's text comes from the tokenizer's chat template, and the template's own markers (``<|im_start|>``...)
must become special tokens, while the same strings typed by a user must not: otherwise a message could close
its turn and open a forged system turn. ``ChatFormat.encode`` keeps the common case byte-identical to how
training encodes the rendered text, and encodes contents as plain text only when they hold a marker.

A reply ends at the tokens in ``end_ids``: eos, and the special token the template closes a turn with (found
by rendering a reply, so ChatML's ``<|im_end|>`` and Llama 3's ``<|eot_id|>`` alike come from the tokenizer).
"""

from __future__ import annotations

import json
import re
from functools import cached_property

from lmstack.errors import LmstackError
from lmstack.text.tokenizer import Tokenizer

_HOLE = "\ue000{}\ue001"  # private-use characters around a message number: a content placeholder
_HOLES = re.compile("\ue000(\\d+)\ue001")


class ChatFormat:
    """How the conversations of one tokenizer are written, encoded and ended."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    @cached_property
    def specials(self) -> list[str]:
        """The strings of the tokenizer's special tokens."""
        return [t.content for t in self.tokenizer.backend.get_added_tokens_decoder().values() if t.special]

    @cached_property
    def turn_end(self) -> str | None:
        """The special token that ends an assistant turn: the first one the template writes after a reply."""
        probe = _HOLE.format(0)
        text = self.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": probe}],
                           add_generation_prompt=False)
        after = text[text.find(probe) + len(probe):] if probe in text else ""
        found = [(after.find(s), -len(s), s) for s in self.specials if s in after]
        return min(found)[2] if found else None

    @cached_property
    def end_ids(self) -> frozenset[int]:
        """The tokens that end a reply: eos and the end-of-turn token."""
        turn_end = None if self.turn_end is None else self.tokenizer.token_to_id(self.turn_end)
        return frozenset(i for i in (self.tokenizer.eos_id, turn_end) if i is not None)

    def render(self, messages: list[dict], tools: list[dict] | None = None,
               add_generation_prompt: bool = True) -> str:
        """The conversation's text under the tokenizer's chat template (by default opening the reply)."""
        return self.tokenizer.apply_chat_template(messages, tools, add_generation_prompt)

    def encode(self, messages: list[dict], tools: list[dict] | None = None,
               add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the rendered conversation, in which special-token strings inside message contents stay
        plain text (anywhere else they are refused)."""
        tokenizer = self.tokenizer
        if self._marked(json.dumps([tools, [m.get("tool_calls") for m in messages]], ensure_ascii=False)):
            raise LmstackError("tools and tool calls may not contain special tokens such as <|im_end|>")
        if not any(self._marked(m.get("content") or "") for m in messages):
            return tokenizer.encode(self.render(messages, tools, add_generation_prompt))
        holes = [{**m, "content": _HOLE.format(i)} if m.get("content") else m for i, m in enumerate(messages)]
        parts = _HOLES.split(self.render(holes, tools, add_generation_prompt))  # template, message number, ...
        numbers = [int(n) for n in parts[1::2]]
        if sorted(numbers) != [i for i, m in enumerate(messages) if m.get("content")]:
            raise LmstackError("messages may not contain special tokens such as <|im_end|> with this chat template")
        ids: list[int] = []
        for j, part in enumerate(parts):
            ids += tokenizer.encode(messages[int(part)]["content"], specials=False) if j % 2 else tokenizer.encode(part)
        return ids

    def _marked(self, value: str) -> bool:
        return any(s in value for s in self.specials)
