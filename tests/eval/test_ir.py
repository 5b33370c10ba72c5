"""IR measures: hand-computed cases, and parity with trec_eval (pytrec_eval) on random graded runs."""

from __future__ import annotations

import json
import math
import random

import pytest
import pytrec_eval

from lmstack.errors import LmstackError
from lmstack.eval.ir import average_precision, evaluate, ndcg, read_qrels, read_run, reciprocal_rank, recall


def test_hand_computed_query():
    ranked = ["a", "b", "c", "d", "e"]
    rels = {"b": 2, "d": 1, "z": 3, "a": 0}  # z: relevant but never retrieved; a: judged not relevant
    assert recall(ranked, rels, 2) == pytest.approx(1 / 3)
    assert recall(ranked, rels, 5) == pytest.approx(2 / 3)
    assert reciprocal_rank(ranked, rels, 1) == 0.0 and reciprocal_rank(ranked, rels, 5) == 0.5
    assert average_precision(ranked, rels) == pytest.approx((1 / 2 + 2 / 4) / 3)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg(ranked, rels, 5) == pytest.approx(dcg / idcg)
    assert ndcg(["z", "b", "d"], rels, 3) == pytest.approx(1.0)


def test_evaluate_averages_over_judged_queries_and_counts_mismatches():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    run = {"q1": ["a"], "q9": ["x"]}
    result = evaluate(run, qrels, ks=(1,))
    assert result["queries"] == 2 and result["recall@1"] == 0.5  # q2 has no ranking: scored 0
    assert result["qrels_queries_missing_from_run"] == 1
    assert result["run_queries_without_qrels"] == 1
    assert result["qrels_queries_without_relevant"] == 1  # q3 judges nothing relevant: left out
    with pytest.raises(LmstackError, match="judge no passage relevant"):
        evaluate(run, {"q": {"a": 0}})


def _random_case(seed: int) -> tuple[dict, dict]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(60)]
    qrels, run = {}, {}
    for q in range(25):
        judged = rng.sample(docs, rng.randint(1, 20))
        rels = {d: rng.choice([0, 0, 1, 2, 3]) for d in judged}
        rels[rng.choice(judged)] = rng.randint(1, 3)  # at least one relevant
        qrels[f"q{q}"] = rels
        ranked = rng.sample(docs, rng.randint(1, 40))
        scores = sorted((rng.random() for _ in ranked), reverse=True)  # distinct scores, best first
        run[f"q{q}"] = dict(zip(ranked, scores))
    return qrels, run


@pytest.mark.parametrize("seed", range(5))
def test_parity_with_pytrec_eval(seed):
    qrels, scored = _random_case(seed)
    ks = (1, 5, 10, 20)
    measures = {"map", "recip_rank"} | {f"recall_{k}" for k in ks} | {f"ndcg_cut_{k}" for k in ks}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(scored)
    run = {q: sorted(s, key=s.get, reverse=True) for q, s in scored.items()}
    # MRR@k: trec_eval's recip_rank on the run cut to k.
    cut = {k: pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(
        {q: dict(sorted(s.items(), key=lambda kv: -kv[1])[:k]) for q, s in scored.items()}) for k in ks}
    for q, ranked in run.items():
        rels = qrels[q]
        assert average_precision(ranked, rels) == pytest.approx(reference[q]["map"], abs=1e-9)
        for k in ks:
            assert recall(ranked, rels, k) == pytest.approx(reference[q][f"recall_{k}"], abs=1e-9)
            assert ndcg(ranked, rels, k) == pytest.approx(reference[q][f"ndcg_cut_{k}"], abs=1e-9)
            assert reciprocal_rank(ranked, rels, k) == pytest.approx(cut[k][q]["recip_rank"], abs=1e-9)
    means = evaluate(run, qrels, ks)
    assert means["ndcg@10"] == pytest.approx(sum(r["ndcg_cut_10"] for r in reference.values()) / len(reference))


def test_readers(tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 a 2\n\nq1 0 b 0\nq2 Q0 c 1\n", encoding="utf-8")
    assert read_qrels(qrels) == {"q1": {"a": 2, "b": 0}, "q2": {"c": 1}}
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"q1": [{"id": "b", "score": 1.0}, {"id": "a", "score": 2.0},
                                      {"id": "c", "score": 1.0}]}))
    assert read_run(run) == {"q1": ["a", "b", "c"]}  # by score; the tie keeps the listed order
    run.write_text(json.dumps({"q1": [{"id": "a", "score": 1}, {"id": "a", "score": 0}]}))
    with pytest.raises(LmstackError, match="lists a passage twice"):
        read_run(run)
    run.write_text(json.dumps({"q1": ["a", "b"]}))
    with pytest.raises(LmstackError, match=r"expected a list of \{\"id\", \"score\"\} objects"):
        read_run(run)
    qrels.write_text("q1 0 a high\n", encoding="utf-8")
    with pytest.raises(LmstackError, match=r"qrels.txt:1: expected 'qid 0 docid relevance'"):
        read_qrels(qrels)
