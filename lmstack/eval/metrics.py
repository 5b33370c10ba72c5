"""The harness's metrics, through the field's own libraries, with lm-evaluation-harness's names.

* Per sample (``SAMPLE_METRICS``: ``fn(prediction, references, **options) -> float``, best over the references):
  ``exact_match`` as lm-eval's ``exact_match`` (HF evaluate's, with ``regexes_to_ignore`` / ``ignore_case`` /
  ``ignore_punctuation`` / ``ignore_numbers``), ``squad_em`` / ``squad_f1`` (SQuAD v2.0's official normalisation in
  English, CMRC2018's character-level matching in Chinese: ``lmstack.text.answers``, shared with ``qa``), ``acc``
  (the chosen option's index is a gold one).
* Per corpus (``CORPUS_METRICS``: ``fn(predictions, references, lang) -> dict``): BLEU, chrF and TER by sacrebleu
  (Post 2018) with its signature (``tok:zh`` for Chinese, else ``13a``; chrF's defaults; TER's defaults, plus
  ``asian_support`` for Chinese, where words are not space-separated), and ROUGE-1/2/L F-measure by Google's
  rouge-score (Lin 2004) with Porter stemming in English (``use_stemmer=True``, as lm-eval and HF evaluate call
  it) and, in Chinese, a tokenizer that keeps every Han character as a token (rouge-score's own drops all
  non-ASCII text, so it scores Chinese as 0). Several references: sacrebleu's multi-reference statistics; for
  ROUGE the best reference per measure (rouge-score's ``score_multi``), then the mean over the corpus. Scales are
  the libraries': sacrebleu 0-100, ROUGE 0-1.
* ``bootstrap_ci``: the percentile bootstrap of a mean (Efron & Tibshirani 1993), seeded.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import re
import string
from collections.abc import Callable, Sequence

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF, TER

from lmstack.errors import LmstackError
from lmstack.text.answers import best_em_f1
from lmstack.text.han import HAN

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
BLEU_TOKENIZE = {"zh": "zh"}  # lang -> sacrebleu tokenizer; every other language: 13a (sacrebleu's default)
# One Han character, or a run of other letters/digits (``\w`` minus Han and "_"): latin words and numbers whole.
_ZH_TOKEN = re.compile(f"[{HAN}]|[^\\W_{HAN}]+")
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_DIGIT_TABLE = str.maketrans("", "", string.digits)


# ---------------------------------------------------------------------------------------------- per sample
def exact_match(prediction: str, references: list[str], ignore_case: bool = False, ignore_punctuation: bool = False,
                regexes_to_ignore: Sequence[str] = (), ignore_numbers: bool = False) -> float:
    """lm-eval's ``exact_match`` (HF evaluate's ``exact_match``): each regex of ``regexes_to_ignore`` is removed in
    turn (``re.sub(r, "", s)``), then case, ASCII punctuation and digits as asked; 1.0 when the prediction equals
    any reference."""
    def norm(s: str) -> str:
        for pattern in regexes_to_ignore:
            s = re.sub(pattern, "", s)
        if ignore_case:
            s = s.lower()
        if ignore_punctuation:
            s = s.translate(_PUNCT_TABLE)
        if ignore_numbers:
            s = s.translate(_DIGIT_TABLE)
        return s
    pred = norm(str(prediction))
    return float(any(pred == norm(str(r)) for r in _as_list(references)))


def squad_em(prediction: str, references: list[str], lang: str = "en") -> float:
    """SQuAD v2.0 exact match (CMRC2018's for ``lang`` "zh"), best over the references; no reference = no answer."""
    return best_em_f1(_as_list(references), prediction, lang)[0]


def squad_f1(prediction: str, references: list[str], lang: str = "en") -> float:
    """SQuAD v2.0 token F1 (CMRC2018's character-level LCS F1 for ``lang`` "zh"), best over the references."""
    return best_em_f1(_as_list(references), prediction, lang)[1]


def accuracy(prediction: int | str, references: list[int | str]) -> float:
    """lm-eval's ``acc``: 1.0 when the chosen option (an index) is a gold one (compared as text: 1 == "1")."""
    return float(str(prediction) in {str(r) for r in _as_list(references)})


def _as_list(references) -> list:
    return [references] if isinstance(references, (str, int)) else list(references)


# ---------------------------------------------------------------------------------------------- per corpus
def _streams(predictions: list[str], references: list[list[str]]) -> list[list[str | None]]:
    """Per-prediction reference lists -> sacrebleu's reference streams (a missing reference is None: nrefs:var)."""
    if len(predictions) != len(references):
        raise LmstackError(f"{len(predictions)} predictions but {len(references)} reference lists")
    refs = [_as_list(r) for r in references]
    if any(not r for r in refs):
        raise LmstackError("a prediction has no reference (BLEU, chrF and TER need at least one)")
    width = max((len(r) for r in refs), default=1)
    return [[r[i] if i < len(r) else None for r in refs] for i in range(width)]


SACREBLEU_METRICS: dict[str, Callable[[str], object]] = {
    "bleu": lambda lang: BLEU(tokenize=BLEU_TOKENIZE.get(lang, "13a")),
    "chrf": lambda lang: CHRF(),
    "ter": lambda lang: TER(asian_support=lang in BLEU_TOKENIZE),
}


def sacrebleu_score(name: str, predictions: list[str], references: list[list[str]], lang: str = "en"):
    """(sacrebleu's score object, its signature string) for ``name`` in bleu / chrf / ter."""
    metric = SACREBLEU_METRICS[name](lang)
    result = metric.corpus_score(list(predictions), _streams(predictions, references))
    return result, metric.get_signature().format()


def bleu(predictions: list[str], references: list[list[str]], lang: str = "en") -> tuple[float, str]:
    """Corpus BLEU (Papineni et al. 2002) by sacrebleu: (score 0-100, signature). ``references[i]``: the references
    of prediction i. Tokenised with ``zh`` for Chinese, ``13a`` otherwise."""
    result, signature = sacrebleu_score("bleu", predictions, references, lang)
    return result.score, signature


def chrf(predictions: list[str], references: list[list[str]], lang: str = "en") -> tuple[float, str]:
    """Corpus chrF (Popović 2015) by sacrebleu with its defaults (character 6-grams, beta 2): (score, signature)."""
    result, signature = sacrebleu_score("chrf", predictions, references, lang)
    return result.score, signature


def ter(predictions: list[str], references: list[list[str]], lang: str = "en") -> tuple[float, str]:
    """Corpus TER (Snover et al. 2006) by sacrebleu (lower is better): (score, signature); Chinese with
    ``asian_support`` (characters as words)."""
    result, signature = sacrebleu_score("ter", predictions, references, lang)
    return result.score, signature


class ChineseRougeTokenizer:
    """A rouge-score tokenizer for Chinese (and text mixing it with latin script): every Han character is a token,
    runs of other letters and digits are one lower-cased token each, punctuation and spaces are dropped."""

    def tokenize(self, text: str) -> list[str]:
        return _ZH_TOKEN.findall(text.lower())


ROUGE_TOKENIZERS: dict[str, Callable[[], object] | None] = {"en": None, "zh": ChineseRougeTokenizer}  # None: its own


def rouge_scorer_for(lang: str = "en") -> rouge_scorer.RougeScorer:
    """rouge-score's scorer for ROUGE-1/2/L: its own tokenizer with the Porter stemmer (English: it keeps only
    a-z0-9, so other languages are refused rather than silently mangled), or the Chinese one."""
    if lang not in ROUGE_TOKENIZERS:
        raise LmstackError(f"ROUGE: no tokenizer for lang {lang!r} (valid: {', '.join(ROUGE_TOKENIZERS)})")
    tokenizer = ROUGE_TOKENIZERS[lang]
    if tokenizer is None:
        return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=tokenizer())


def rouge(predictions: list[str], references: list[list[str]], lang: str = "en") -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (0-1) over the corpus; per prediction the best reference for each measure."""
    if len(predictions) != len(references):
        raise LmstackError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise LmstackError("ROUGE of an empty corpus")
    scorer, totals = rouge_scorer_for(lang), dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, refs in zip(predictions, references):
        refs = _as_list(refs)
        if not refs:
            raise LmstackError("a prediction has no reference (ROUGE needs at least one)")
        scores = scorer.score(refs[0], pred) if len(refs) == 1 else scorer.score_multi(refs, pred)
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    return {key: total / len(predictions) for key, total in totals.items()}


def rouge_signature(lang: str = "en") -> str:
    """What shaped the ROUGE figures, in sacrebleu's signature style."""
    tok = "default|stem:porter" if ROUGE_TOKENIZERS.get(lang) is None else "han-char|stem:no"
    return f"F|best-ref|mean|tok:{tok}|rouge-score:{importlib.metadata.version('rouge-score')}"


def _rouge_corpus(predictions: list[str], references: list[list[str]], lang: str = "en") -> dict:
    return {**rouge(predictions, references, lang), "signature": rouge_signature(lang)}


def _corpus(name: str, fn: Callable[..., tuple[float, str]]) -> Callable[..., dict]:
    def run(predictions: list[str], references: list[list[str]], lang: str = "en") -> dict:
        value, signature = fn(predictions, references, lang)
        return {name: value, "signature": signature}
    run.__doc__ = fn.__doc__
    return run


# ---------------------------------------------------------------------------------------------- intervals
def bootstrap_ci(scores: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, low, high): the ``1 - alpha`` percentile-bootstrap interval of the mean of ``scores`` — ``n_boot``
    resamples with replacement drawn by ``numpy.random.default_rng(seed)``; the same seed gives the same interval."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise LmstackError("a confidence interval of no scores")
    if n_boot < 1 or not 0 < alpha < 1:
        raise LmstackError(f"bootstrap: n_boot must be >= 1 and alpha in (0, 1) (got {n_boot}, {alpha})")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(values.mean()), float(low), float(high)


SAMPLE_METRICS: dict[str, Callable[..., float]] = {
    "exact_match": exact_match, "squad_em": squad_em, "squad_f1": squad_f1, "acc": accuracy, "acc_norm": accuracy}
CORPUS_METRICS: dict[str, Callable[..., dict]] = {
    "bleu": _corpus("bleu", bleu), "chrf": _corpus("chrf", chrf), "ter": _corpus("ter", ter), "rouge": _rouge_corpus}
METRIC_OPTIONS = ("aggregation", "higher_is_better")  # lm-eval metric_list keys that are not the function's


def sample_metric(name: str, lang: str = "en", **options) -> Callable[[object, list], float]:
    """``SAMPLE_METRICS[name]`` with a task's ``metric_list`` options bound (``lang`` where the metric takes it);
    an unknown metric or option is named with the valid ones, before anything runs."""
    if name not in SAMPLE_METRICS:
        raise LmstackError(f"metric {name!r}: not a per-sample metric ({', '.join(SAMPLE_METRICS)}; corpus-level: "
                           f"{', '.join(CORPUS_METRICS)})")
    fn = SAMPLE_METRICS[name]
    accepted = [p for p in inspect.signature(fn).parameters if p not in ("prediction", "references")]
    options = {k: v for k, v in options.items() if k not in METRIC_OPTIONS}
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise LmstackError(f"metric {name!r}: unknown option(s) {', '.join(unknown)} "
                           f"(valid: {', '.join([*accepted, *METRIC_OPTIONS]) or 'none'})")
    patterns = options.get("regexes_to_ignore", ())
    if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
        raise LmstackError(f"metric {name!r}: regexes_to_ignore must be a list of regular expressions")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as e:
            raise LmstackError(f"metric {name!r}: regexes_to_ignore {pattern!r} does not compile ({e})") from None
    if "lang" in accepted:
        options.setdefault("lang", lang)
    return functools.partial(fn, **options)


HIGHER_IS_BETTER = {"exact_match": True, "squad_em": True, "squad_f1": True, "acc": True, "acc_norm": True,
                    "bleu": True, "chrf": True, "ter": False, "rouge1": True, "rouge2": True, "rougeL": True}
