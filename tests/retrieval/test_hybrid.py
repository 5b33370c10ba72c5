"""Reciprocal-rank fusion by the formula of Cormack et al. (2009)."""

from __future__ import annotations

import pytest

from lmstack.retrieval.hybrid import rrf


def test_scores_follow_the_formula_and_scores_of_inputs_are_ignored():
    bm25 = [("a", 12.0), ("b", 9.0), ("c", 1.0)]
    dense = [("c", 0.9), ("a", 0.8), ("d", 0.1)]
    fused = dict(rrf([bm25, dense]))
    assert fused == pytest.approx({"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 63})
    assert [item for item, _ in rrf([bm25, dense])] == ["a", "c", "b", "d"]
    assert rrf([bm25, dense]) == rrf([[(i, s * 1000) for i, s in bm25], dense])  # only ranks matter


def test_agreement_beats_one_top_rank_and_k_controls_it():
    one = [("x", 1.0), ("y", 0.5)]
    two = [("z", 1.0), ("w", 0.7), ("y", 0.5)]
    assert rrf([one, two])[0][0] == "y"  # 1/62 + 1/63 > 1/61: found by both beats first in one
    assert rrf([one, two], k=0)[0][0] == "x"  # 1/2 + 1/3 < 1/1: a small k lets top ranks dominate


def test_top_empty_and_single_rankings():
    assert rrf([[("a", 1.0), ("b", 0.0)], []], top=1) == [("a", pytest.approx(1 / 61))]
    assert rrf([]) == []
