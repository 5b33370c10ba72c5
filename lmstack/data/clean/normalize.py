"""Text normalisation: mojibake repair, Unicode normal form, control characters, whitespace and line endings.

Mojibake: ``ftfy.fix_encoding`` (Speer 2019) reliably undoes UTF-8 that was decoded as cp1252/latin-1
("cafÃ©" -> "café"), and leaves clean text untouched. The rest of ``ftfy.fix_text`` is left out on
purpose: it straightens curly quotes, which would rewrite Chinese “” quotation marks. Mojibake from other
code pages (GBK read as latin-1) is not repairable reliably by any library we know of; it stays as is.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

from lmstack.data.clean.config import NormalizeConfig

# C0 and C1 controls except \t and \n, DEL, byte-order mark / zero-width no-break space, zero-width space.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u200b]")
# UTF-8 lead bytes 0xC2-0xF4 read as cp1252/latin-1 are U+00C2-U+00F4: text without them has no such mojibake.
_MOJIBAKE_LEAD = re.compile("[\u00c2-\u00f4]")
_LINE_ENDINGS = re.compile(r"\r\n?|[\u2028\u2029\x85\x0b\x0c]")
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace except newline (tabs, NBSP, ideographic space...)
_LINE_EDGES = re.compile(r" ?\n ?")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize(text: str, cfg: NormalizeConfig) -> str:
    """Return the cleaned text; an empty string means nothing was left."""
    if cfg.fix_mojibake and _MOJIBAKE_LEAD.search(text):  # ftfy is slow on clean non-Latin text; skip it there
        text = ftfy.fix_encoding(text)
    if cfg.unicode_form != "none":
        text = unicodedata.normalize(cfg.unicode_form, text)
    if cfg.whitespace:
        text = _LINE_ENDINGS.sub("\n", text)
    if cfg.strip_controls:
        text = _CONTROLS.sub("", text)
    if cfg.whitespace:
        text = _SPACES.sub(" ", text)
        text = _LINE_EDGES.sub("\n", text)
        text = _BLANK_RUNS.sub("\n\n", text).strip()
    return text
