"""The C4 heuristics (Raffel et al. 2020, section 2.2; line lists from the released TFDS ``c4_utils``).

Page rules drop a whole document: "lorem ipsum" anywhere, a curly brace anywhere (code; ``curated``: more
than ``max_curly_braces`` per word), or fewer than
``min_sentences`` sentences once the line rules have run. Line rules delete single lines and keep the page:
no terminal punctuation (or ending in an ellipsis; only with ``terminal_punct``, which the ``web`` profile
sets and ``curated`` does not, as FineWeb (Penedo et al. 2024) dropped it: it deletes titles, headings and
lines ending in a bracket or a number), fewer than ``min_words_per_line`` words, the word "javascript", a
cookie / privacy policy phrase. Chinese sentence marks count as terminal punctuation, and so does an ASCII
".", "!" or "?" that touches a Han character ("模型.仿真", common in academic Chinese), where C4's rule, written
for English, wants a space after it.
"""

from __future__ import annotations

import re

from lmstack.data.clean.config import C4Config
from lmstack.text.han import HAN
from lmstack.data.clean.words import Words

END_MARKS = (".", "?", "!", '"', "。", "！", "？", "．", "”", "」", "』")
_SENTENCE_END = re.compile(r"[.!?]+(?=[\s\"”’')\]]|$)"  # English: a space, a closing quote or the end after it
                           f"|(?<=[{HAN}])[.!?]+|[.!?]+(?=[{HAN}])"  # an ASCII mark touching a Han character
                           r"|[。！？．]+")


def lorem_ipsum(w: Words, cfg: C4Config) -> str | None:
    return "contains 'lorem ipsum'" if "lorem ipsum" in w.text.lower() else None


def curly_brace(w: Words, cfg: C4Config) -> str | None:
    """C4 drops any page with a '{' (``max_curly_braces: 0``); curated only pages with more than
    ``max_curly_braces`` of them per word, which code and JSON have and set notation or wiki markup in prose not."""
    braces = w.text.count("{")
    if braces == 0:
        return None
    ratio = braces / max(len(w.words), 1)
    return f"{braces} curly braces, {ratio:.3f} per word > {cfg.max_curly_braces}" \
        if ratio > cfg.max_curly_braces else None


def min_sentences(w: Words, cfg: C4Config) -> str | None:
    n = len(_SENTENCE_END.findall(w.text))
    return f"{n} sentences < {cfg.min_sentences}" if n < cfg.min_sentences else None


def terminal_punct(line: str, words: list[str], cfg: C4Config) -> bool:
    """True when the line fails: it does not end in terminal punctuation, or ends in an ellipsis."""
    return cfg.terminal_punct and (not line.endswith(END_MARKS) or line.endswith("..."))


def line_words(line: str, words: list[str], cfg: C4Config) -> bool:
    return len(words) < cfg.min_words_per_line


def javascript(line: str, words: list[str], cfg: C4Config) -> bool:
    return "javascript" in line.lower()


def policy(line: str, words: list[str], cfg: C4Config) -> bool:
    lower = line.lower()
    return any(p in lower for p in cfg.policy_phrases)


def filter_lines(w: Words, cfg: C4Config, enabled: set[str]) -> tuple[str, list[tuple[str, str]]]:
    """Drop failing lines. Returns the new text and (rule, line) for every line removed."""
    kept, removed = [], []
    per_line = w.line_words if "c4.line_words" in enabled else [[]] * len(w.lines)  # segmenting costs
    for line, words in zip(w.lines, per_line):
        rule = line.strip() and next((n for n, f in LINE_RULES.items() if n in enabled and f(line, words, cfg)), None)
        if rule:
            removed.append((rule, line))
        else:
            kept.append(line)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip() if removed else w.text
    return text, removed


BEFORE_LINES = {"c4.lorem_ipsum": lorem_ipsum, "c4.curly_brace": curly_brace}
LINE_RULES = {"c4.terminal_punct": terminal_punct, "c4.line_words": line_words,
              "c4.javascript": javascript, "c4.policy": policy}
AFTER_LINES = {"c4.min_sentences": min_sentences}
