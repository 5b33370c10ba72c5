"""The Gopher quality and repetition filters (Rae et al. 2021, appendix A.1 and table A1).

Each rule takes a document's ``Words`` and the ``GopherConfig`` and returns None when the document passes,
or a short string with the measured value when it fails. Repetition rules run first, as in the paper.
Chinese (``lang == "zh"``) counts jieba words or characters (see ``words.py``), its own stop words and,
for the n-gram repetition rules and the share of words with a letter, its own thresholds (``*_cjk``; see
``config.py``: FineWeb-2's for Chinese in the ``curated`` profile, Gopher's English ones in ``web``).
"""

from __future__ import annotations

import re
from itertools import islice
from collections.abc import Callable

import numpy as np

from lmstack.data.clean.config import GopherConfig
from lmstack.data.clean.words import Words, ngram_hashes

Rule = Callable[[Words, GopherConfig], "str | None"]
BULLETS = ("•", "‣", "⁃", "◦", "●", "○", "▪", "■", "□", "►", "▶", "*", "-", "–", "—", "·")
ELLIPSES = ("...", "…")
_LETTER = re.compile(r"[^\W\d_]")
# A transcript speaker label at the start of a line: '#', 1-30 characters that are neither '#' nor white space,
# '#', then ':' or '：' (DialogSum's "#Person1#: ..."). A hashtag ("#话题# text", "#tag") has no colon right
# after its closing '#' at a line start, so it still counts. "Name:" labels have no '#' and need nothing.
SPEAKER_LABEL = re.compile(r"^[ \t]*#[^#\s]{1,30}#[:：]", re.MULTILINE)
_PUNCT = "\"'()[]{}<>.,;:!?-–—…“”‘’«»、，。；：！？（）《》「」『』"


# --- repetition (table A1) -------------------------------------------------------------------------------

def dup_lines(w: Words, cfg: GopherConfig) -> str | None:
    frac, _ = _duplicates([line for line in w.lines if line.strip()], len(w.text))
    return f"duplicate lines {frac:.3f} > {cfg.max_dup_line_frac}" if frac > cfg.max_dup_line_frac else None


def dup_paragraphs(w: Words, cfg: GopherConfig) -> str | None:
    frac, _ = _duplicates(w.paragraphs, len(w.text))
    return f"duplicate paragraphs {frac:.3f} > {cfg.max_dup_para_frac}" if frac > cfg.max_dup_para_frac else None


def dup_line_chars(w: Words, cfg: GopherConfig) -> str | None:
    _, chars = _duplicates([line for line in w.lines if line.strip()], len(w.text))
    return (f"characters in duplicate lines {chars:.3f} > {cfg.max_dup_line_chars}"
            if chars > cfg.max_dup_line_chars else None)


def dup_paragraph_chars(w: Words, cfg: GopherConfig) -> str | None:
    _, chars = _duplicates(w.paragraphs, len(w.text))
    limit = cfg.max_dup_para_chars
    return f"characters in duplicate paragraphs {chars:.3f} > {limit}" if chars > limit else None


def top_ngram(w: Words, cfg: GopherConfig) -> str | None:
    """Characters covered by the most frequent word n-gram, n = 2, 3, 4, when it occurs ``top_ngram_min_count``
    times or more (Gopher: twice; curated: three times, since in a short document a term named twice, as a
    title and an abstract do, covers a fifth of it without any repetition a reader would notice)."""
    for n, limit in zip((2, 3, 4), cfg.max_top_ngram_chars_cjk if w.cjk else cfg.max_top_ngram_chars):
        frac = top_ngram_chars(w, n, cfg.top_ngram_min_count)
        if frac > limit:
            return f"top {n}-gram covers {frac:.3f} of characters > {limit}"
    return None


def dup_ngram(w: Words, cfg: GopherConfig) -> str | None:
    """Characters covered by word n-grams that occur more than once, n = 5..10."""
    limits = cfg.max_dup_ngram_chars_cjk if w.cjk else cfg.max_dup_ngram_chars
    for i, (n, limit) in enumerate(zip(range(5, 11), limits)):
        frac = dup_ngram_chars(w, n)
        if frac > limit:
            return f"duplicated {n}-grams cover {frac:.3f} of characters > {limit}"
        if frac <= min(limits[i:]):  # a repeated (n+1)-gram repeats its n-grams: the share only shrinks with n
            return None
    return None


def _duplicates(items: list[str], total_chars: int) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of all characters inside those repeats)."""
    seen: set[str] = set()
    n_dup = dup_chars = 0
    for item in items:
        if item in seen:
            n_dup, dup_chars = n_dup + 1, dup_chars + len(item)
        seen.add(item)
    return (n_dup / len(items) if items else 0.0), (dup_chars / total_chars if total_chars else 0.0)


def top_ngram_chars(w: Words, n: int, min_count: int = 2) -> float:
    """Share of word characters inside all occurrences of the most frequent n-gram (0 if it occurs fewer than
    ``min_count`` times)."""
    h = ngram_hashes(w.word_hashes, n)
    if len(h) == 0:
        return 0.0
    _, first, counts = np.unique(h, return_index=True, return_counts=True)
    top = counts.argmax()
    if counts[top] < max(min_count, 2):
        return 0.0
    start = first[top]
    return float(w.word_lengths[start : start + n].sum() * counts[top] / w.word_lengths.sum())


def dup_ngram_chars(w: Words, n: int) -> float:
    """Share of word characters covered by repeats of an earlier n-gram; overlaps are counted once."""
    h = ngram_hashes(w.word_hashes, n)
    if len(h) == 0:
        return 0.0
    _, first = np.unique(h, return_index=True)
    repeat = np.ones(len(h), dtype=bool)
    repeat[first] = False
    starts = np.flatnonzero(repeat)
    edges = np.zeros(len(w.words) + 1, dtype=np.int64)  # +1 where a repeat starts, -1 where it ends
    edges[starts] += 1
    edges[starts + n] -= 1
    covered = np.cumsum(edges[:-1]) > 0
    return float(w.word_lengths[covered].sum() / w.word_lengths.sum())


# --- quality (appendix A.1) ------------------------------------------------------------------------------

def word_count(w: Words, cfg: GopherConfig) -> str | None:
    lo, hi = cfg.word_count
    n = len(w.words)
    return None if lo <= n <= hi else f"{n} words outside [{lo}, {hi}]"


def mean_word_length(w: Words, cfg: GopherConfig) -> str | None:
    if w.cjk and w.cjk_words == "chars":  # every word is one character: nothing to measure
        return None
    lo, hi = cfg.mean_word_length_cjk if w.cjk else cfg.mean_word_length
    mean = float(w.word_lengths.mean()) if w.words else 0.0
    return None if lo <= mean <= hi else f"mean word length {mean:.2f} outside [{lo}, {hi}]"


def symbol_ratio(w: Words, cfg: GopherConfig) -> str | None:
    """'#' and ellipses per word; with ``skip_speaker_labels`` the '#' of ``SPEAKER_LABEL`` markup do not count."""
    text = w.text
    if cfg.skip_speaker_labels and "#" in text:
        text = SPEAKER_LABEL.sub("", text)
    symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
    ratio = symbols / max(len(w.words), 1)
    limit = cfg.max_symbol_word_ratio
    return f"{ratio:.3f} '#' or ellipses per word > {limit}" if ratio > limit else None


def bullet_lines(w: Words, cfg: GopherConfig) -> str | None:
    lines = [line.lstrip() for line in w.lines if line.strip()]
    frac = sum(line.startswith(BULLETS) for line in lines) / max(len(lines), 1)
    return f"{frac:.3f} of lines start with a bullet > {cfg.max_bullet_lines}" if frac > cfg.max_bullet_lines else None


def ellipsis_lines(w: Words, cfg: GopherConfig) -> str | None:
    lines = [line.rstrip() for line in w.lines if line.strip()]
    frac = sum(line.endswith(ELLIPSES) for line in lines) / max(len(lines), 1)
    limit = cfg.max_ellipsis_lines
    return f"{frac:.3f} of lines end with an ellipsis > {limit}" if frac > limit else None


def alpha_words(w: Words, cfg: GopherConfig) -> str | None:
    frac = sum(map(bool, map(_LETTER.search, w.words))) / max(len(w.words), 1)
    limit = cfg.min_alpha_words_cjk if w.cjk else cfg.min_alpha_words
    return f"{frac:.3f} of words have a letter < {limit}" if frac < limit else None


def stop_words(w: Words, cfg: GopherConfig) -> str | None:
    stops = set(cfg.stop_words_zh if w.cjk else cfg.stop_words)
    words = (word.lower().strip(_PUNCT) for word in w.words)
    found = len(list(islice(filter(stops.__contains__, words), cfg.min_stop_words)))  # stop counting at enough
    return None if found >= cfg.min_stop_words else f"{found} stop words < {cfg.min_stop_words}"


REPETITION: dict[str, Rule] = {
    "gopher.dup_lines": dup_lines,
    "gopher.dup_paragraphs": dup_paragraphs,
    "gopher.dup_line_chars": dup_line_chars,
    "gopher.dup_paragraph_chars": dup_paragraph_chars,
    "gopher.top_ngram": top_ngram,
    "gopher.dup_ngram": dup_ngram,
}
QUALITY: dict[str, Rule] = {
    "gopher.word_count": word_count,
    "gopher.mean_word_length": mean_word_length,
    "gopher.symbol_ratio": symbol_ratio,
    "gopher.bullet_lines": bullet_lines,
    "gopher.ellipsis_lines": ellipsis_lines,
    "gopher.alpha_words": alpha_words,
    "gopher.stop_words": stop_words,
}
