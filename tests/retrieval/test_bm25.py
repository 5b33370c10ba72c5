"""BM25 analyzers and the bm25s-backed index: terms, scores by the formula, variants, save/load, Chinese."""

from __future__ import annotations

import json
import math

import bm25s
import pytest

from lmstack.errors import LmstackError
from lmstack.retrieval.bm25 import VARIANTS, BM25Index
from lmstack.retrieval.text import Analyzer

PLAIN = Analyzer(stopwords="none", stemmer="none")


def test_english_analysis_lowercases_stems_and_drops_stop_words():
    assert Analyzer().tokens("The Running Dogs, and a cat!") == ["run", "dog", "cat"]
    assert Analyzer(stemmer="none").tokens("The Running Dogs") == ["running", "dogs"]
    assert Analyzer(lower=False, stopwords="none", stemmer="none").tokens("The Dogs") == ["The", "Dogs"]
    assert Analyzer().tokens("the of and") == []


def test_chinese_is_segmented_with_jieba_and_mixed_text_split_by_script():
    assert Analyzer(han="jieba").tokens("我在北京大学学习") == ["北京大学", "学习"]  # 我, 在: stop words
    assert "北京" in Analyzer().tokens("我在北京大学学习")  # search mode adds the words inside 北京大学
    assert Analyzer(han="char", stopwords="none").tokens("北京") == ["北", "京"]
    # Latin runs glued to Han text are split from it and stemmed; the Han part is segmented.
    assert Analyzer(han="jieba").tokens("GPUs训练模型") == ["gpus", "训练", "模型"]


def test_fingerprint_follows_settings_and_bad_settings_are_named():
    assert Analyzer().fingerprint == Analyzer.from_settings(Analyzer().settings()).fingerprint
    variants = [Analyzer(), Analyzer(stemmer="none"), Analyzer(han="char"), Analyzer(stopwords="en")]
    assert len({a.fingerprint for a in variants}) == 4
    with pytest.raises(LmstackError, match="stemmer: 'klingon' is not a PyStemmer language"):
        Analyzer(stemmer="klingon")
    with pytest.raises(LmstackError, match="unknown analyzer setting"):
        Analyzer.from_settings({"casefold": True})


def test_lucene_scores_follow_the_formula():
    texts = ["apple banana apple", "banana cherry", "cherry cherry cherry date", "elder"]
    k1, b = 1.2, 0.75
    index = BM25Index.build(texts, PLAIN, "lucene", k1=k1, b=b)
    docs = [t.split() for t in texts]
    avgdl = sum(map(len, docs)) / len(docs)

    def score(query: list[str], d: list[str]) -> float:
        total = 0.0
        for t in query:
            n, f = sum(t in doc for doc in docs), d.count(t)
            idf = math.log(1 + (len(docs) - n + 0.5) / (n + 0.5))
            total += idf * f / (f + k1 * (1 - b + b * len(d) / avgdl))
        return total

    (hits,) = index.search(["apple cherry"], 10)
    expected = sorted(((i, score(["apple", "cherry"], d)) for i, d in enumerate(docs)), key=lambda x: -x[1])
    assert [i for i, _ in hits] == [i for i, s in expected if s > 0]  # "elder" shares no term: not returned
    assert [s for _, s in hits] == pytest.approx([s for _, s in expected if s > 0], rel=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_ranks_the_rare_term_match_first_and_survives_save_load(variant, tmp_path):
    texts = ["common words here", "common words there", "common rare words", "other text entirely"] * 3
    index = BM25Index.build(texts, PLAIN, variant)
    hits = index.search(["rare common", "entirely", "absent"], 5)
    assert [texts[i] for i, _ in hits[0][:3]] == ["common rare words"] * 3
    assert {texts[i] for i, _ in hits[1]} == {"other text entirely"}  # bm25l/bm25+: no zero-evidence filler
    assert hits[2] == []
    index.save(tmp_path / "bm25")
    assert BM25Index.load(tmp_path / "bm25", PLAIN).search(["rare common", "entirely"], 5) == hits[:2]


def test_stop_word_query_gets_an_empty_ranking_and_k_beyond_the_corpus_is_clamped():
    index = BM25Index.build(["the cat", "a dog"], Analyzer(), "lucene")
    one_term = math.log(2) * 1 / (1 + 1.5)  # idf ln(1 + 1.5/1.5), tf 1 / (1 + k1) at average length
    expected = [[], [(0, pytest.approx(one_term)), (1, pytest.approx(one_term))]]
    assert index.search(["the a of", "cat dog"], 50) == expected


def test_unknown_variant_and_empty_corpus():
    with pytest.raises(LmstackError, match="BM25 variant 'okapi'"):
        BM25Index.build(["x"], PLAIN, "okapi")
    with pytest.raises(LmstackError, match="no passages"):
        BM25Index.build([], PLAIN)


def test_jieba_beats_the_bm25s_default_tokenizer_on_chinese(shared_data):
    """CMRC 2018 trial, question -> its paragraph: the default regex keeps each Han run as one token."""
    data = json.loads((shared_data / "cmrc2018" / "cmrc2018_trial.json").read_text(encoding="utf-8"))["data"]
    paragraphs = [p for article in data for p in article["paragraphs"]]
    texts = [p["context"] for p in paragraphs]
    questions = [(q["question"], i) for i, p in enumerate(paragraphs) for q in p["qas"]][::4]

    def recall_at_5(hits: list[list[int]]) -> float:
        return sum(gold in h[:5] for h, (_, gold) in zip(hits, questions)) / len(questions)

    ours = BM25Index.build(texts, Analyzer())
    ours_recall = recall_at_5([[i for i, _ in h] for h in ours.search([q for q, _ in questions], 5)])
    default = bm25s.BM25()
    default.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([q for q, _ in questions], show_progress=False)
    docs, _ = default.retrieve(tokens, k=5, show_progress=False)
    default_recall = recall_at_5(docs.tolist())
    assert ours_recall > 0.8 and ours_recall > default_recall + 0.3, (ours_recall, default_recall)
