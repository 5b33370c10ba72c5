"""Text normalisation: mojibake repair, Unicode normal form, control characters, whitespace and line endings.

Mojibake: ``ftfy.fix_encoding`` (Speer 2019) reliably undoes UTF-8 that was decoded as cp1252/latin-1
("cafÃ©" -> "café"), and leaves clean text untouched. The rest of ``ftfy.fix_text`` is left out on
purpose: it straightens curly quotes, which would rewrite Chinese “” quotation marks. Mojibake from other
code pages (GBK read as latin-1) is not repairable reliably by any library we know of; it stays as is.

Unicode form: NFKC folds compatibility characters (ligatures "ﬁ" -> "fi", full-width letters and digits
"ＡＢＣ１２３" -> "ABC123", half-width katakana, circled numbers, superscripts). Plain NFKC would also rewrite
Chinese punctuation, "，" -> "," and "：" -> ":", altering clean text, so with ``keep_cjk_punct`` (the default)
these characters are left exactly as they are and NFKC is applied to everything else:

- U+3000-U+303F, CJK Symbols and Punctuation (、。〈〉《》「」『』【】〔〕〜 ...; the ideographic space U+3000
  is kept here too, but the whitespace step below turns it into a space like any other blank);
- the punctuation and symbols of Halfwidth and Fullwidth Forms: U+FF01-U+FF0F, U+FF1A-U+FF20, U+FF3B-U+FF40,
  U+FF5B-U+FF60 (！＂＃＄％＆＇（）＊＋，－．／ ：；＜＝＞？＠ ［＼］＾＿｀ ｛｜｝～｟｠);
- U+2026 HORIZONTAL ELLIPSIS, the Chinese "……" (NFKC expands it to "...").

The full-width digits U+FF10-U+FF19 and letters U+FF21-U+FF3A, U+FF41-U+FF5A still fold to ASCII, and the
half-width CJK punctuation U+FF61-U+FF64 (｡｢｣､) folds to its ordinary form (。「」、). NFC and ``none`` never
touch any of these.
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
# What keep_cjk_punct leaves out of NFKC (see the module docstring), as runs.
CJK_PUNCT = "\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff60\u2026"
_CJK_PUNCT_RUNS = re.compile(f"([{CJK_PUNCT}]+)")


def normalize(text: str, cfg: NormalizeConfig) -> str:
    """Return the cleaned text; an empty string means nothing was left."""
    if cfg.fix_mojibake and _MOJIBAKE_LEAD.search(text):  # ftfy is slow on clean non-Latin text; skip it there
        text = ftfy.fix_encoding(text)
    if cfg.unicode_form == "NFKC" and cfg.keep_cjk_punct:
        text = nfkc_keeping_cjk_punct(text)
    elif cfg.unicode_form != "none":
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


def nfkc_keeping_cjk_punct(text: str) -> str:
    """NFKC on everything but the CJK punctuation listed in the module docstring, which is kept as it is."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    parts = _CJK_PUNCT_RUNS.split(text)  # odd positions are the kept runs
    return "".join(p if i % 2 else unicodedata.normalize("NFKC", p) for i, p in enumerate(parts))
