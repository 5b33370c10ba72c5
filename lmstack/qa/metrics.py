"""Extractive QA metrics, as the official evaluation scripts compute them (SQuAD v2.0's ``evaluate-v2.0.py``,
CMRC2018's ``cmrc2018_evaluate.py``): the answer matching itself lives in ``lmstack.text.answers`` (shared with
``lmstack.eval``); here, the per-question figures become SQuAD v2-style summaries, with the no-answer threshold
search (predictions whose no-answer probability is above a threshold become empty; the best threshold is found).
"""

from __future__ import annotations

from lmstack.text.answers import (
    best_em_f1 as score,
    cmrc_exact,
    cmrc_f1,
    longest_common_substring,
    mixed_segmentation,
    normalize_answer,
    remove_punctuation,
    squad_exact,
    squad_f1,
)

__all__ = ["best_threshold", "cmrc_exact", "cmrc_f1", "longest_common_substring", "mixed_segmentation",
           "normalize_answer", "remove_punctuation", "score", "squad_exact", "squad_f1", "squad_scores"]


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
