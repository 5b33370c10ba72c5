"""BM25 analyzers: text -> index terms, for English, Chinese and text that mixes them.

Han runs are segmented with jieba (precise mode, or search mode, which also emits the shorter words inside a
long one: 中华人民共和国 -> 中华, 华人, 人民, 共和, 共和国, 中华人民共和国), or cut
into single characters. Everything else is split into word characters, lower-cased, stripped of stop words
and stemmed with PyStemmer (Porter's Snowball stemmers). The settings and the library versions make the
analyzer's fingerprint: an index stores it and refuses queries analysed any other way, since terms that differ
silently match nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import re
from functools import cached_property
from typing import Literal

import jieba
import Stemmer
from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN

from lmstack.errors import LmstackError
from lmstack.text.han import HAN, HAS_HAN

VERSION = 1  # bump when the analysis itself changes
# A Han run, or a run of other word characters (``\w`` minus Han, so "abc中文" gives "abc" and "中文").
_PIECES = re.compile(f"([{HAN}]+)|([^\\W{HAN}]+)")
_WORD = re.compile(r"\w+")
STOPWORDS = {"none": (), "en": STOPWORDS_EN, "zh": STOPWORDS_CHINESE, "en+zh": STOPWORDS_EN + STOPWORDS_CHINESE}


@dataclasses.dataclass(frozen=True)
class Analyzer:
    """Turns text into BM25 terms. ``tokens(text)`` is the whole contract."""

    lower: bool = True
    stopwords: Literal["none", "en", "zh", "en+zh"] = "en+zh"
    stemmer: str = "english"  # a PyStemmer language, or "none"
    han: Literal["jieba", "jieba-search", "char"] = "jieba-search"

    def __post_init__(self) -> None:
        if self.stopwords not in STOPWORDS:
            raise LmstackError(f"stopwords: {self.stopwords!r} is not one of {', '.join(STOPWORDS)}")
        if self.han not in ("jieba", "jieba-search", "char"):
            raise LmstackError(f"han: {self.han!r} is not one of jieba, jieba-search, char")
        if self.stemmer != "none":
            if self.stemmer not in Stemmer.algorithms():
                raise LmstackError(f"stemmer: {self.stemmer!r} is not a PyStemmer language "
                                   f"({', '.join(Stemmer.algorithms())}, or none)")

    @cached_property
    def _stop(self) -> frozenset[str]:
        return frozenset(STOPWORDS[self.stopwords])

    @cached_property
    def _stems(self) -> dict[str, str] | None:
        """word -> stem, filled on first sight: a corpus repeats its words, and a lookup beats the stemmer."""
        if self.stemmer == "none":
            return None
        return _StemCache(Stemmer.Stemmer(self.stemmer).stemWord)

    @cached_property
    def _segment(self):
        if self.han == "char":
            return list
        jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict..." on every first use
        return jieba.lcut_for_search if self.han == "jieba-search" else jieba.lcut

    def tokens(self, text: str) -> list[str]:
        """The index terms of ``text``: a bag (repeats kept, since BM25 counts them; Han words come last)."""
        if self.lower:
            text = text.lower()
        stop, stems = self._stop, self._stems
        if text.isascii() or not HAS_HAN.search(text):  # the common case, without the per-piece dispatch
            words = [w for w in _WORD.findall(text) if w not in stop]
            return [stems[w] for w in words] if stems is not None else words
        words, han = [], []
        for run, word in _PIECES.findall(text):
            if run:
                han += [w for w in self._segment(run) if w not in stop]
            elif word not in stop:
                words.append(stems[word] if stems is not None else word)
        return words + han

    def settings(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> dict:
        """Settings, the versions of the libraries that shape the terms, and their fingerprint (for a manifest)."""
        versions = {"lmstack-analyzer": VERSION}
        if self.stemmer != "none":
            versions["PyStemmer"] = importlib.metadata.version("PyStemmer")
        if self.han != "char":
            versions["jieba"] = importlib.metadata.version("jieba")
        body = {"settings": self.settings(), "versions": versions}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        return {**body, "fingerprint": digest}

    @property
    def fingerprint(self) -> str:
        return self.describe()["fingerprint"]

    @classmethod
    def from_settings(cls, settings: dict) -> Analyzer:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(settings) - known
        if unknown:
            raise LmstackError(f"unknown analyzer setting(s): {', '.join(sorted(unknown))}")
        return cls(**settings)


class _StemCache(dict):
    def __init__(self, stem):
        super().__init__()
        self._stem = stem

    def __missing__(self, word: str) -> str:
        self[word] = stemmed = self._stem(word)
        return stemmed
