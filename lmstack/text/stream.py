"""Token ids to text, incrementally: what a stream may show after each new token.

A byte-level token can end in the middle of a UTF-8 character (a Chinese character is three bytes), which
decodes to U+FFFD until the rest arrives, so nothing is released while the text ends in U+FFFD. Stop
strings are found in the decoded continuation and cut off; text that could be the start of a stop string
is held back until it is clear it is not, so a stream never shows part of one.

Each token costs a decode of a short window, not of the whole continuation (so a long output stays linear):
the new text is decode(ids[prefix:]) minus decode(ids[prefix:read]), where ``read`` is where the text shown so
far ends and ``prefix`` the end before it. Decoding a window that starts on a token boundary of complete text
gives the same characters the whole decode has there, and a window of two pieces keeps what a decoder does at the
start of a text (a Metaspace decoder drops the first space) the same on both sides of the minus, as vLLM's
incremental detokenizer does.
"""

from __future__ import annotations

from typing import Protocol
from collections.abc import Sequence

INCOMPLETE = "\ufffd"  # what a decoder makes of a partial UTF-8 sequence


class Decoder(Protocol):
    def decode(self, ids: list[int]) -> str: ...


class TextStream:
    """Feed tokens with ``push``, end with ``finish``; each returns the text newly safe to show."""

    def __init__(self, tokenizer: Decoder, stop: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.text = ""  # the continuation decoded so far, cut at a stop string once one appears
        self.shown = 0  # characters of ``text`` already released
        self.done = False  # a stop string appeared, or ``finish`` was called
        self._prefix = self._read = 0  # the decode window: ids[_prefix:_read] is already in ``text``

    def push(self, token: int) -> str:
        self.ids.append(token)
        new = self._new_text(final=False)
        if new is None:
            return ""
        self.text += new
        return self._release(final=False)

    def finish(self) -> str:
        """Release everything left (a character still incomplete shows as U+FFFD)."""
        if not self.done:
            self.text += self._new_text(final=True) or ""
        return self._release(final=True)

    def _new_text(self, final: bool) -> str | None:
        """The text the tokens after ``_read`` add (None while it ends in an incomplete character)."""
        if self._read == len(self.ids):
            return ""
        before = self.tokenizer.decode(self.ids[self._prefix:self._read]) if self._read > self._prefix else ""
        after = self.tokenizer.decode(self.ids[self._prefix:])
        if not final and (after.endswith(INCOMPLETE) or len(after) < len(before)):
            return None
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before):]

    def _release(self, final: bool) -> str:
        hits = [i for i in (self.text.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.text, self.done = self.text[:min(hits)], True
            end = len(self.text)
        else:
            self.done = final
            end = len(self.text) if final else len(self.text) - _stop_prefix(self.text, self.stop)
        piece, self.shown = self.text[self.shown:end], end
        return piece


def _stop_prefix(text: str, stop: list[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop string (and so must wait)."""
    return max((k for s in stop for k in range(1, min(len(s), len(text) + 1)) if text.endswith(s[:k])), default=0)
