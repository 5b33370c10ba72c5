"""Short-answer matching as the official extractive-QA evaluation scripts do it: one implementation shared by
``qa`` (reader metrics) and ``eval`` (harness metrics).

* English: SQuAD v2.0's ``evaluate-v2.0.py`` (Rajpurkar et al. 2018): answers are normalised (lower case,
  punctuation and the articles a/an/the removed, whitespace collapsed); EM is string equality, F1 the
  bag-of-tokens overlap; the best score over the gold answers counts. An unanswerable question's gold is
  the empty string, so it scores 1 exactly when the prediction is empty too.
* Chinese: CMRC2018's ``cmrc2018_evaluate.py`` (Cui et al. 2019): text is split into characters (Chinese) and
  words (runs of other text; nltk's word_tokenize there, a regex here), punctuation dropped; F1 comes from the
  longest common *substring* of the two sequences; EM compares the texts with punctuation removed.
"""

from __future__ import annotations

import collections
import re
import string

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = frozenset(string.punctuation)
CMRC_PUNCT = {"-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=", "，", "。", "：", "？", "！", "“", "”", "；",
              "’", "《", "》", "……", "·", "、", "「", "」", "（", "）", "－", "～", "『", "』"}
CMRC_CJK = re.compile(r"[\u4e00-\u9fa5]")
WORD = re.compile(r"\w+|[^\w\s]")  # stands in for nltk.word_tokenize on the non-Chinese runs


# ------------------------------------------------------------------------------------------------ SQuAD
def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace (SQuAD's official normalisation)."""
    s = "".join(ch for ch in s.lower() if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", s).split())


def squad_exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def squad_f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:  # no-answer: F1 is 1 if both are empty, else 0
        return float(gold_toks == pred_toks)
    common = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_toks), common / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


# ------------------------------------------------------------------------------------------------- CMRC
def mixed_segmentation(s: str, rm_punc: bool = False) -> list[str]:
    """Chinese characters one by one, other runs split into words (CMRC2018's segmentation)."""
    out, run = [], ""
    for ch in s.lower().strip():
        if rm_punc and ch in CMRC_PUNCT:
            continue
        if CMRC_CJK.match(ch) or ch in CMRC_PUNCT:
            out.extend(WORD.findall(run))
            run = ""
            out.append(ch)
        else:
            run += ch
    return out + WORD.findall(run)


def remove_punctuation(s: str) -> str:
    return "".join(ch for ch in s.lower().strip() if ch not in CMRC_PUNCT)


def longest_common_substring(a: list[str], b: list[str]) -> int:
    """Length of the longest contiguous run shared by ``a`` and ``b`` (CMRC's ``find_lcs``)."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def cmrc_exact(gold: str, pred: str) -> float:
    return float(remove_punctuation(gold) == remove_punctuation(pred))


def cmrc_f1(gold: str, pred: str) -> float:
    gold_segs, pred_segs = mixed_segmentation(gold, rm_punc=True), mixed_segmentation(pred, rm_punc=True)
    lcs = longest_common_substring(gold_segs, pred_segs)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred_segs), lcs / len(gold_segs)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------------------------- scoring
def best_em_f1(golds: list[str], pred: str, lang: str = "en") -> tuple[float, float]:
    """(EM, F1) of ``pred`` against the best of ``golds`` (SQuAD for any ``lang`` but "zh", CMRC2018 for "zh");
    no gold answers means "unanswerable" (gold "")."""
    if lang == "zh":
        if not golds:  # unanswerable: right exactly when the prediction is empty too, as in SQuAD v2
            return (float(not remove_punctuation(pred)),) * 2
        return max(cmrc_exact(g, pred) for g in golds), max(cmrc_f1(g, pred) for g in golds)
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(squad_exact(g, pred) for g in golds), max(squad_f1(g, pred) for g in golds)
