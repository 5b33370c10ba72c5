"""Extractive QA metrics, as the official evaluation scripts compute them.

* English: SQuAD v2.0's ``evaluate-v2.0.py`` (Rajpurkar et al. 2018): answers are normalised (lower case,
  punctuation and the articles a/an/the removed, whitespace collapsed); EM is string equality, F1 the
  bag-of-tokens overlap; the best score over the gold answers counts. An unanswerable question's gold is
  the empty string, so it scores 1 exactly when the prediction is empty too. With a no-answer probability
  per question, predictions above a threshold become empty, and the best threshold is searched.
* Chinese: CMRC2018's ``cmrc2018_evaluate.py`` (Cui et al. 2019): text is split into characters (Chinese) and
  words (runs of other text; nltk's word_tokenize there, a regex here), punctuation dropped; F1 comes from the
  longest common *substring* of the two sequences; EM compares the texts with punctuation removed.
"""

from __future__ import annotations

import collections
import re
import string

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
CMRC_PUNCT = {"-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=", "，", "。", "：", "？", "！", "“", "”", "；",
              "’", "《", "》", "……", "·", "、", "「", "」", "（", "）", "－", "～", "『", "』"}
CMRC_CJK = re.compile(r"[\u4e00-\u9fa5]")
WORD = re.compile(r"\w+|[^\w\s]")  # stands in for nltk.word_tokenize on the non-Chinese runs


# ------------------------------------------------------------------------------------------------ SQuAD
def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace (SQuAD's official normalisation)."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
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
def score(golds: list[str], pred: str, lang: str = "en") -> tuple[float, float]:
    """(EM, F1) of ``pred`` against the best of ``golds``; no gold answers means "unanswerable" (gold "")."""
    if lang == "zh":
        if not golds:  # unanswerable: right exactly when the prediction is empty too, as in SQuAD v2
            return (float(not remove_punctuation(pred)),) * 2
        return max(cmrc_exact(g, pred) for g in golds), max(cmrc_f1(g, pred) for g in golds)
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(squad_exact(g, pred) for g in golds), max(squad_f1(g, pred) for g in golds)


def squad_scores(golds: dict[str, list[str]], preds: dict[str, str], langs: dict[str, str] | None = None,
                 na_probs: dict[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict[str, float]:
    """SQuAD v2-style figures in percent: exact, f1, total, and HasAns_/NoAns_ subsets where present.

    ``golds`` maps question id -> gold answer texts (empty list = unanswerable); a question without a
    prediction scores 0. With ``na_probs`` (question id -> no-answer score), predictions whose score is above
    ``na_prob_thresh`` count as "no answer", and best_exact/best_f1 with their thresholds are added.
    """
    langs = langs or {}
    exact, f1 = {}, {}
    for qid, gold in golds.items():
        exact[qid], f1[qid] = score(gold, preds.get(qid, ""), langs.get(qid, "en")) if qid in preds else (0.0, 0.0)
    has_ans = {qid: bool(g) for qid, g in golds.items()}
    if na_probs is not None:
        exact_t = {q: float(not has_ans[q]) if na_probs.get(q, 0.0) > na_prob_thresh else s for q, s in exact.items()}
        f1_t = {q: float(not has_ans[q]) if na_probs.get(q, 0.0) > na_prob_thresh else s for q, s in f1.items()}
    else:
        exact_t, f1_t = exact, f1
    out = _summary(exact_t, f1_t, list(golds))
    for prefix, keep in (("HasAns", True), ("NoAns", False)):
        ids = [q for q in golds if has_ans[q] == keep]
        if ids and len(ids) < len(golds):
            out |= {f"{prefix}_{k}": v for k, v in _summary(exact_t, f1_t, ids).items()}
    if na_probs is not None:
        for name, scores in (("exact", exact), ("f1", f1)):
            best, thresh = best_threshold(preds, scores, na_probs, has_ans)
            out[f"best_{name}"], out[f"best_{name}_thresh"] = best, thresh
    return out


def _summary(exact: dict[str, float], f1: dict[str, float], ids: list[str]) -> dict[str, float]:
    n = len(ids)
    return {"exact": 100.0 * sum(exact[q] for q in ids) / max(n, 1),
            "f1": 100.0 * sum(f1[q] for q in ids) / max(n, 1), "total": n}


def best_threshold(preds: dict[str, str], scores: dict[str, float], na_probs: dict[str, float],
                   has_ans: dict[str, bool]) -> tuple[float, float]:
    """The no-answer threshold that maximises the score, swept over the questions' own no-answer scores
    (``find_best_thresh`` in evaluate-v2.0.py): (best score in percent, threshold)."""
    cur = best = sum(1 for q in has_ans if not has_ans[q])
    thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        cur += scores[qid] if has_ans[qid] else (-1 if preds.get(qid) else 0)
        if cur > best:
            best, thresh = cur, na_probs[qid]
    return 100.0 * best / max(len(scores), 1), thresh
