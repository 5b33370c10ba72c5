import math

import pytest

from lmstack.qa.metrics import (
    best_threshold,
    cmrc_exact,
    cmrc_f1,
    longest_common_substring,
    mixed_segmentation,
    normalize_answer,
    score,
    squad_exact,
    squad_f1,
    squad_scores,
)


def test_squad_normalisation_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a day") == "apple day"
    assert squad_exact("Denver Broncos", "the denver broncos.") == 1.0
    assert squad_exact("Denver Broncos", "Broncos") == 0.0


def test_squad_f1_by_hand():
    # gold {cat, sat}, prediction {cat, sat, down}: P = 2/3, R = 1, F1 = 0.8
    assert squad_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    # tokens count with multiplicity: gold [to, to, be] vs [to, be]: common 2, P = 1, R = 2/3
    assert squad_f1("to to be", "to be") == pytest.approx(0.8)
    assert squad_f1("paris", "london") == 0.0


def test_best_gold_counts_and_no_answer_is_the_empty_string():
    assert score(["in France", "France"], "france") == (1.0, 1.0)
    assert score([], "") == (1.0, 1.0)
    assert score([], "something") == (0.0, 0.0)
    assert score(["France"], "") == (0.0, 0.0)
    assert score(["", "  "], "") == (1.0, 1.0)  # golds that normalise to nothing mean "no answer"


def test_cmrc_segmentation_splits_chinese_characters_and_keeps_words():
    assert mixed_segmentation("4分钟") == ["4", "分", "钟"]
    assert mixed_segmentation("iPhone 7手机") == ["iphone", "7", "手", "机"]
    assert mixed_segmentation("《红楼梦》", rm_punc=True) == ["红", "楼", "梦"]


def test_cmrc_f1_uses_the_longest_common_substring_not_subsequence():
    assert longest_common_substring(list("甲乙丙丁"), list("甲丙丁")) == 2
    # P = 2/3, R = 2/4 -> F1 = 4/7 (a subsequence would give 3 and F1 6/7)
    assert cmrc_f1("甲乙丙丁", "甲丙丁") == pytest.approx(4 / 7)
    assert cmrc_f1("北京大学", "北京") == pytest.approx(2 / 3)
    assert cmrc_f1("北京", "上海") == 0.0


def test_cmrc_exact_ignores_punctuation_and_case():
    assert cmrc_exact("《红楼梦》", "红楼梦") == 1.0
    assert cmrc_exact("CCTV-1", "cctv1") == 1.0
    assert cmrc_exact("红楼梦", "红楼") == 0.0
    assert score(["踢爆"], "踢爆", lang="zh") == (1.0, 1.0)
    assert score([], "", lang="zh") == (1.0, 1.0)


def test_evaluate_splits_has_and_no_answer_and_applies_the_threshold():
    golds = {"a": ["x"], "b": [], "c": ["y z"]}
    preds = {"a": "x", "b": "w", "c": "y"}
    plain = squad_scores(golds, preds)
    assert plain["exact"] == pytest.approx(100 / 3) and plain["total"] == 3
    assert plain["HasAns_total"] == 2 and plain["NoAns_total"] == 1
    assert plain["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert plain["NoAns_exact"] == 0.0
    # b's no-answer score is above the threshold: it counts as "no answer", which is right
    na = {"a": -1.0, "b": 2.0, "c": 0.5}
    thresholded = squad_scores(golds, preds, na_probs=na, na_prob_thresh=1.0)
    assert thresholded["exact"] == pytest.approx(200 / 3) and thresholded["NoAns_exact"] == 100.0
    # sweep: a (-1) right +1 -> 2 of 3; c (0.5) wrong +0; b (2) answered a no-answer question -1
    assert thresholded["best_exact"] == pytest.approx(200 / 3) and thresholded["best_exact_thresh"] == -1.0


def test_best_threshold_follows_the_official_sweep():
    # sorted by na: a (-1) gains 1, b (2) loses 1 (it predicted text for a no-answer question)
    best, thresh = best_threshold({"a": "x", "b": "y"}, {"a": 1.0, "b": 0.0}, {"a": -1.0, "b": 2.0},
                                  {"a": True, "b": False})
    assert (best, thresh) == (100.0, -1.0)


def test_missing_prediction_scores_zero():
    assert squad_scores({"a": ["x"], "b": ["y"]}, {"a": "x"})["exact"] == 50.0
    assert not math.isnan(squad_scores({"a": ["x"]}, {})["f1"])
