"""Token ids as readable text: each token's own piece of the decoded text, a display label, and its word.

Byte-level BPE splits a Chinese character (3 UTF-8 bytes) over several tokens; decoding one such token alone gives
"�". Here token i's *piece* is the text that decoding ``ids[:i+1]`` completes beyond ``ids[:i]``, so the pieces
concatenate exactly to ``decode(ids)`` and a token holding only a character's leading bytes has the empty piece.
Its *label* (what plots and the viewer show) is the character it helps build, flagged as a ``fragment``. A token's
*word* is the unit its first character belongs to: a run of non-Han word characters, or one Han character (Chinese
has no spaces to split on); -1 for whitespace and punctuation.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from lmstack.text.han import HAN
from lmstack.text.tokenizer import Tokenizer

WORD = re.compile(rf"[{HAN}]|[^\W{HAN}]+")
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class TokenPieces:
    ids: list[int]
    pieces: list[str]  # "".join(pieces) == tokenizer.decode(ids)
    labels: list[str]  # display text: the piece, or for a fragment the character it begins
    fragment: list[bool]  # the token holds a character's leading bytes only (its piece is empty)
    words: list[int]  # index of the word unit the token's first character belongs to, -1 for none


def token_pieces(tokenizer: Tokenizer, ids: list[int]) -> TokenPieces:
    """Pieces, labels, fragments and word units of ``ids`` (see the module docstring)."""
    full = tokenizer.decode(ids)
    prefixes = tokenizer.backend.decode_batch([ids[:i + 1] for i in range(len(ids))], skip_special_tokens=False)
    stable, starts = 0, []
    pieces = []
    for prefix in prefixes:
        while prefix and not full.startswith(prefix):  # trailing incomplete bytes decode to U+FFFD
            prefix = prefix[:-1]
        end = max(stable, len(prefix))
        starts.append(stable)
        pieces.append(full[stable:end])
        stable = end
    fragment = [not p and i < len(ids) for i, p in enumerate(pieces)]
    labels = [p if p else (full[s] if s < len(full) else REPLACEMENT) for p, s in zip(pieces, starts)]
    unit = [-1] * (len(full) + 1)
    for w, m in enumerate(WORD.finditer(full)):
        unit[m.start():m.end()] = [w] * (m.end() - m.start())
    words = []
    for p, s in zip(pieces, starts):
        k = s + (len(p) - len(p.lstrip())) if p.strip() else s  # the first non-space character
        words.append(unit[k] if (p.strip() or not p) and k < len(full) else -1)
    return TokenPieces(list(ids), pieces, labels, fragment, words)


def display(label: str) -> str:
    """A label safe for one line: newline and tab as visible marks, other control and line-separator characters as
    their escapes (\\x13, \\u2028)."""
    label = label.replace("\n", "↵").replace("\t", "→")
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in label)
