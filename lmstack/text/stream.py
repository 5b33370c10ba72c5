"""Token ids to text, incrementally: what a stream may show after each new token.

A byte-level token can end in the middle of a UTF-8 character (a Chinese character is three bytes), which
decodes to U+FFFD until the rest arrives, so nothing is released while the text ends in U+FFFD. Stop
strings are found in the decoded continuation and cut off; text that could be the start of a stop string
is held back until it is clear it is not, so a stream never shows part of one.
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

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith(INCOMPLETE):
            return ""
        self.text = text
        return self._release(final=False)

    def finish(self) -> str:
        """Release everything left (a character still incomplete shows as U+FFFD)."""
        if not self.done:
            self.text = self.tokenizer.decode(self.ids)
        return self._release(final=True)

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
