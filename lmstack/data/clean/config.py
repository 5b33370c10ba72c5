"""``CleanConfig``: the one source of truth for ``lmstack clean``. ``lmstack/configs/clean.yaml`` only fills it.

Every threshold below cites the rule it comes from: Gopher = Rae et al. 2021, "Scaling Language Models",
appendix A (table A1 for repetition); C4 = Raffel et al. 2020, "Exploring the Limits of Transfer
Learning", section 2.2. Any rule can be switched off by naming it in ``disable`` (``pipeline.RULES`` lists them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class ReadConfig:
    text_field: str = "text"  # .jsonl key / .parquet column holding the document
    txt_unit: Literal["block", "file"] = "block"  # .txt: one document per blank-line separated block, or per file
    task_mb: float = 16.0  # inputs are cut into tasks of about this size; each task becomes one output shard


@dataclass
class NormalizeConfig:
    unicode_form: Literal["NFKC", "NFC", "none"] = "NFKC"
    fix_mojibake: bool = True  # ftfy.fix_encoding: undo UTF-8 read as cp1252/latin-1, nothing else
    strip_controls: bool = True  # C0/C1 control characters other than newline and tab, BOM, zero-width space
    whitespace: bool = True  # line endings -> \n, runs of spaces -> one, no spaces at line ends, 3+ newlines -> 2


@dataclass
class LangIdConfig:
    keep: list[str] = field(default_factory=lambda: ["en", "zh"])  # ISO 639-1 codes to keep
    min_score: float = 0.5  # py3langid probability below which a document is dropped
    cjk_ratio: float = 0.3  # share of Han characters among letters at which text is Chinese without a model
    max_chars: int = 600  # characters given to py3langid (it is linear in length and slow in Python)


@dataclass
class GopherConfig:
    """Rae et al. 2021, appendix A. CJK documents count jieba words (or characters, ``cjk_words: chars``)."""

    cjk_words: Literal["jieba", "chars"] = "jieba"
    word_count: list[int] = field(default_factory=lambda: [50, 100_000])
    mean_word_length: list[float] = field(default_factory=lambda: [3.0, 10.0])
    mean_word_length_cjk: list[float] = field(default_factory=lambda: [1.0, 4.0])  # jieba words; skipped for chars
    max_symbol_word_ratio: float = 0.1  # '#' and ellipses per word
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8  # share of words with at least one letter
    min_stop_words: int = 2
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])
    stop_words_zh: list[str] = field(default_factory=lambda: ["的", "了", "是", "在", "和", "也", "就", "都",
                                                              "而", "之", "其", "以", "与", "不"])
    max_dup_line_frac: float = 0.30
    max_dup_para_frac: float = 0.30
    max_dup_line_chars: float = 0.20
    max_dup_para_chars: float = 0.20
    max_top_ngram_chars: list[float] = field(default_factory=lambda: [0.20, 0.18, 0.16])  # n = 2, 3, 4
    max_dup_ngram_chars: list[float] = field(default_factory=lambda: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10])  # n = 5..10


@dataclass
class C4Config:
    """Raffel et al. 2020, section 2.2, with the line lists of the released TFDS ``c4_utils``."""

    min_words_per_line: int = 5  # CJK lines count jieba words (or characters)
    min_sentences: int = 3
    policy_phrases: list[str] = field(default_factory=lambda: [
        "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"])


@dataclass
class PiiConfig:
    scrub_removed: bool = True  # also scrub documents written to removed/, so no personal data is kept there


@dataclass
class DedupConfig:
    threshold: float = 0.8  # Jaccard similarity of shingle sets at which a document is a near-duplicate
    num_perm: int = 128
    bands: int = 0  # LSH bands x rows; 0 = the most rows per band that still makes a pair at the threshold
    rows: int = 0  # a candidate with probability >= 0.99 (candidates are verified, so recall is what matters)
    verify: Literal["exact", "signature"] = "exact"  # decide candidates on exact shingle-set Jaccard (keeps the
    # kept documents' shingle hashes, ~4 bytes per word) or on the signatures' estimate (128 x 4 bytes per doc)
    shingle_words: int = 5  # word n-grams for spaced languages
    shingle_chars: int = 5  # character n-grams for CJK
    seed: int = 1
    index_in: list[Path] = field(default_factory=list)  # dedup_index/ folders of earlier runs to deduplicate against


@dataclass
class CleanConfig:
    read: ReadConfig = field(default_factory=ReadConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    langid: LangIdConfig = field(default_factory=LangIdConfig)
    gopher: GopherConfig = field(default_factory=GopherConfig)
    c4: C4Config = field(default_factory=C4Config)
    pii: PiiConfig = field(default_factory=PiiConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    disable: list[str] = field(default_factory=list)  # rule names to switch off, e.g. c4.terminal_punct
    workers: int = 0  # processes for the per-document stages; 0 = one per CPU core
    examples: int = 3  # example documents kept in the report for each rule

    def __post_init__(self):
        if len(self.gopher.max_top_ngram_chars) != 3 or len(self.gopher.max_dup_ngram_chars) != 6:
            raise ValueError("gopher.max_top_ngram_chars needs 3 values (n=2..4), max_dup_ngram_chars 6 (n=5..10)")
        if not 0.0 < self.dedup.threshold <= 1.0:
            raise ValueError(f"dedup.threshold must be in (0, 1], got {self.dedup.threshold}")
        if (self.dedup.bands > 0) != (self.dedup.rows > 0) or self.dedup.bands * self.dedup.rows > self.dedup.num_perm:
            raise ValueError("dedup.bands and dedup.rows go together and bands * rows must not exceed num_perm")
        if not 1 <= self.dedup.shingle_words <= 16 or not 1 <= self.dedup.shingle_chars <= 16:
            raise ValueError("dedup.shingle_words and dedup.shingle_chars must be between 1 and 16")
