"""``CleanConfig``: the one source of truth for ``lmstack clean``. ``lmstack/configs/clean.yaml`` only fills it.

Every threshold below cites the rule it comes from: Gopher = Rae et al. 2021, "Scaling Language Models",
appendix A (table A1 for repetition); C4 = Raffel et al. 2020, "Exploring the Limits of Transfer
Learning", section 2.2; FineWeb = Penedo et al. 2024; FineWeb-2 = Penedo et al. 2025, whose per-language
thresholds (``configs/cmn_Hani.yml`` in huggingface/fineweb-2, jieba words as here) calibrate the Chinese ones.
Any rule can be switched off by naming it in ``disable`` (``pipeline.RULES`` lists them).

Two profiles (``profile``; ``PROFILES`` holds what each sets): ``curated``, the default, is for text that
was written to be read (papers, encyclopaedias, books, dialogues, answers): the C4 terminal-punctuation line
rule is off (as in FineWeb), one sentence and ten words make a document, short lines stay, a speaker label
``#Name#:`` opening a line is markup rather than two '#' for Gopher's symbol ratio, and Chinese
repetition and letter-share thresholds are FineWeb-2's for Chinese. ``web`` is the rules as published, for
crawled pages: C4's three sentences, five words a line and terminal punctuation, Gopher's 50 words, and
Gopher's English thresholds for every language. ``lmstack.config.build`` fills the chosen profile in under
whatever is given explicitly, so ``--profile web --c4.min_sentences 2`` is the web profile with two
sentences. ``CleanConfig(profile="web")`` only names the profile: use ``CleanConfig.preset("web")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from lmstack.config import SEED32, build


@dataclass
class ReadConfig:
    text_field: str = "text"  # .jsonl key / .parquet column holding the document
    txt_unit: Literal["block", "file"] = "block"  # .txt: one document per blank-line separated block, or per file
    task_mb: float = 16.0  # inputs are cut into tasks of about this size; each task becomes one output shard
    max_chars: int = 500_000  # a longer document is cut into documents of at most this many characters (0: never)


@dataclass
class NormalizeConfig:
    unicode_form: Literal["NFKC", "NFC", "none"] = "NFKC"
    keep_cjk_punct: bool = True  # NFKC leaves CJK punctuation (，。：！ U+3000-303F, U+FF01-FF60 punctuation, …) alone
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
    word_count: list[int] = field(default_factory=lambda: [10, 100_000])  # web: Gopher's [50, 100000]
    mean_word_length: list[float] = field(default_factory=lambda: [3.0, 10.0])
    mean_word_length_cjk: list[float] = field(default_factory=lambda: [1.0, 4.0])  # jieba words; skipped for chars
    max_symbol_word_ratio: float = 0.1  # '#' and ellipses per word
    skip_speaker_labels: bool = True  # '#Name#:' at a line start (gopher.SPEAKER_LABEL) is transcript markup,
    # not two hash symbols: DialogSum's "#Person1#: ..." turns; web: false (every '#' counts, as Gopher)
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8  # share of words with at least one letter
    min_alpha_words_cjk: float = 0.735  # Chinese (FineWeb-2): numbers and units are jieba words of their own
    min_stop_words: int = 2
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])
    stop_words_zh: list[str] = field(default_factory=lambda: [  # ours, then FineWeb-2's (cmn_Hani) not in ours
        "的", "了", "是", "在", "和", "也", "就", "都", "而", "之", "其", "以", "与", "不",
        "年", "月", "日", "於", "為", "有", "被", "人", "中", "为", "他", "與", "後", "由"])
    max_dup_line_frac: float = 0.30
    max_dup_para_frac: float = 0.30
    max_dup_line_chars: float = 0.20
    max_dup_para_chars: float = 0.20
    max_top_ngram_chars: list[float] = field(default_factory=lambda: [0.20, 0.18, 0.16])  # n = 2, 3, 4
    top_ngram_min_count: int = 3  # occurrences from which the top n-gram counts; web: 2 (Gopher: any repeat)
    max_dup_ngram_chars: list[float] = field(default_factory=lambda: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10])  # n = 5..10
    # Chinese (FineWeb-2, cmn_Hani): the same measures over jieba words run higher on ordinary text, because
    # jieba splits a term it does not know into single characters and Chinese prose repeats a term where
    # English would use a pronoun; web: the English values above.
    max_top_ngram_chars_cjk: list[float] = field(default_factory=lambda: [0.256, 0.201, 0.171])
    max_dup_ngram_chars_cjk: list[float] = field(default_factory=lambda: [0.198, 0.182, 0.167, 0.154, 0.14, 0.127])


@dataclass
class C4Config:
    """Raffel et al. 2020, section 2.2, with the line lists of the released TFDS ``c4_utils``."""

    terminal_punct: bool = False  # the terminal-punctuation line rule; web: on (C4), curated: off (FineWeb)
    min_words_per_line: int = 1  # CJK lines count jieba words (or characters); web: 5
    min_sentences: int = 1  # web: 3
    max_curly_braces: float = 0.02  # '{' per word above which a page is code; web: 0 (C4: any '{' at all)
    policy_phrases: list[str] = field(default_factory=lambda: [
        "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies",
        "隐私政策", "隐私权政策", "使用条款", "服务条款", "使用cookie", "cookie政策"])  # the same in Chinese


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
    seed: int = field(default=1, metadata={"bounds": SEED32})  # numpy's RandomState draws the permutations
    index_in: list[Path] = field(default_factory=list)  # dedup_index/ folders of earlier runs to deduplicate against


WEB = {  # the rules as published (C4, Gopher), Gopher's English thresholds for every language
    "gopher": {"word_count": [50, 100_000], "min_alpha_words_cjk": 0.8, "top_ngram_min_count": 2,
               "skip_speaker_labels": False,
               "stop_words_zh": ["的", "了", "是", "在", "和", "也", "就", "都", "而", "之", "其", "以", "与", "不"],
               "max_top_ngram_chars_cjk": [0.20, 0.18, 0.16],
               "max_dup_ngram_chars_cjk": [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]},
    "c4": {"terminal_punct": True, "min_words_per_line": 5, "min_sentences": 3, "max_curly_braces": 0.0},
}


@dataclass
class CleanConfig:
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {"curated": {}, "web": WEB}  # name -> values it sets

    profile: Literal["curated", "web"] = "curated"  # curated: text written to be read; web: crawled pages
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

    @classmethod
    def preset(cls, profile: str = "curated", values: dict[str, Any] | None = None) -> CleanConfig:
        """The named profile with ``values`` (nested, as in the YAML file) on top."""
        return build(cls, {**(values or {}), "profile": profile})

    def __post_init__(self):
        g = self.gopher
        if len(g.max_top_ngram_chars) != 3 or len(g.max_dup_ngram_chars) != 6 or \
                len(g.max_top_ngram_chars_cjk) != 3 or len(g.max_dup_ngram_chars_cjk) != 6:
            raise ValueError("gopher.max_top_ngram_chars(_cjk) needs 3 values (n=2..4), "
                             "max_dup_ngram_chars(_cjk) 6 (n=5..10)")
        if not 0.0 < self.dedup.threshold <= 1.0:
            raise ValueError(f"dedup.threshold must be in (0, 1], got {self.dedup.threshold}")
        if (self.dedup.bands > 0) != (self.dedup.rows > 0) or self.dedup.bands * self.dedup.rows > self.dedup.num_perm:
            raise ValueError("dedup.bands and dedup.rows go together and bands * rows must not exceed num_perm")
        if not 1 <= self.dedup.shingle_words <= 16 or not 1 <= self.dedup.shingle_chars <= 16:
            raise ValueError("dedup.shingle_words and dedup.shingle_chars must be between 1 and 16")
