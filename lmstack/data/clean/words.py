"""Lines, paragraphs and words of one document, computed once and shared by the Gopher and C4 rules;
plus the hashed n-grams that the repetition rules and MinHash count.

Chinese has no spaces, so for ``lang == "zh"`` a word is a jieba token (Sun 2012; the dictionary-only mode,
``HMM=False``, which is faster and good enough for counting) or, with ``cjk_words: chars``, one character.
Every other language splits on whitespace, as the Gopher rules do.
"""

from __future__ import annotations

import logging
import re
import zlib
from functools import cached_property

import jieba
import numpy as np

from lmstack.text.han import HAN

jieba.setLogLevel(logging.WARNING)

CJK_LANGS = ("zh",)
_WORDLIKE = re.compile(r"\w")
_CJK_CHAR_WORDS = re.compile(f"[{HAN}]|[^\\s{HAN}]+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_MIX = np.random.default_rng(20240601).integers(1, 2**63, size=16, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


class Words:
    """A document's lines, paragraphs and words. ``cjk_words`` is "jieba" or "chars"."""

    def __init__(self, text: str, lang: str, cjk_words: str = "jieba"):
        self.text, self.cjk, self.cjk_words = text, lang in CJK_LANGS, cjk_words

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @cached_property
    def paragraphs(self) -> list[str]:
        return [p for p in _PARAGRAPH_BREAK.split(self.text) if p.strip()]

    @cached_property
    def line_words(self) -> list[list[str]]:
        """The words of each line (``len(line_words) == len(lines)``)."""
        if not self.cjk:
            return [line.split() for line in self.lines]
        if self.cjk_words == "chars":
            return [[t for t in _CJK_CHAR_WORDS.findall(line) if _WORDLIKE.search(t)] for line in self.lines]
        out: list[list[str]] = [[]]
        for token in jieba.lcut(self.text, HMM=False):
            if token == "\n":
                out.append([])
            elif _WORDLIKE.search(token):  # spaces and punctuation come back as tokens: they are not words
                out[-1].append(token)
        return out

    @cached_property
    def words(self) -> list[str]:
        return [w for line in self.line_words for w in line]

    @cached_property
    def word_hashes(self) -> np.ndarray:
        return token_hashes(self.words)

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))


def token_hashes(tokens: list[str]) -> np.ndarray:
    """CRC-32 of each token as uint64: deterministic across processes and runs, unlike ``hash()``."""
    return np.fromiter((zlib.crc32(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens))


def char_codes(text: str) -> np.ndarray:
    """The code points of ``text`` as uint64, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """64-bit hash of every run of ``n`` consecutive token hashes (empty when there are fewer than ``n``)."""
    m = len(tokens) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    for k in range(n):  # a different random odd multiplier per position, so "a b" and "b a" differ
        h += tokens[k : k + m] * _MIX[k]
    return fmix64(h)


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit over every output bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))
