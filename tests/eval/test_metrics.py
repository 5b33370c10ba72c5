"""Harness metrics against the libraries and formulas they follow: sacrebleu, rouge-score, lm-eval's exact_match,
SQuAD/CMRC, the bootstrap."""

import math

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from lmstack.errors import LmstackError
from lmstack.eval import metrics
from lmstack.eval.filters import GSM8K_EXACT_MATCH

EN_HYPS = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog", "He read the books yesterday."]
EN_REFS = [["The cat is sitting on the mat.", "A cat sat on the mat."],
           ["The quick brown fox jumped over the lazy dog", "A fast brown fox leaps over a lazy dog"],
           ["Yesterday he was reading books.", "He read books yesterday."]]
ZH_HYPS = ["我今天很高兴。", "北京是中国的首都", "他在2024年买了iPhone"]
ZH_REFS = [["今天我很开心。"], ["中国的首都是北京"], ["他2024年买了一部iPhone"]]


def streams(refs):
    return [list(s) for s in zip(*refs)]


def test_bleu_chrf_ter_equal_sacrebleu_in_english_with_two_references():
    score, sig = metrics.bleu(EN_HYPS, EN_REFS)
    direct = sacrebleu.corpus_bleu(EN_HYPS, streams(EN_REFS))
    assert score == direct.score and 0 < score < 100
    assert "nrefs:2" in sig and "tok:13a" in sig
    # the second reference matters: with the first alone the score differs
    assert metrics.bleu(EN_HYPS, [r[:1] for r in EN_REFS])[0] != score
    assert metrics.chrf(EN_HYPS, EN_REFS)[0] == sacrebleu.corpus_chrf(EN_HYPS, streams(EN_REFS)).score
    assert metrics.ter(EN_HYPS, EN_REFS)[0] == sacrebleu.corpus_ter(EN_HYPS, streams(EN_REFS)).score
    out = metrics.CORPUS_METRICS["bleu"](EN_HYPS, EN_REFS, "en")
    assert out == {"bleu": score, "signature": sig}


def test_bleu_in_chinese_uses_the_zh_tokenizer():
    score, sig = metrics.bleu(ZH_HYPS, ZH_REFS, lang="zh")
    assert score == sacrebleu.corpus_bleu(ZH_HYPS, streams(ZH_REFS), tokenize="zh").score
    assert "tok:zh" in sig
    # with 13a a Chinese sentence is one "word": the score collapses
    assert sacrebleu.corpus_bleu(ZH_HYPS, streams(ZH_REFS)).score < score
    ter, ter_sig = metrics.ter(ZH_HYPS, ZH_REFS, lang="zh")
    assert ter == sacrebleu.corpus_ter(ZH_HYPS, streams(ZH_REFS), asian_support=True).score
    assert "asian:yes" in ter_sig


def test_bleu_takes_a_varying_number_of_references():
    refs = [EN_REFS[0], EN_REFS[1][:1], EN_REFS[2]]
    score, sig = metrics.bleu(EN_HYPS, refs)
    direct = sacrebleu.corpus_bleu(EN_HYPS, [[r[0] for r in refs], [refs[0][1], None, refs[2][1]]])
    assert score == direct.score and "nrefs:var" in sig
    with pytest.raises(LmstackError, match="3 predictions but 2"):
        metrics.bleu(EN_HYPS, refs[:2])


def test_rouge_in_english_is_rouge_score_with_the_stemmer_and_the_best_reference():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expect = {k: 0.0 for k in ("rouge1", "rouge2", "rougeL")}
    for hyp, refs in zip(EN_HYPS, EN_REFS):
        for k in expect:
            expect[k] += max(scorer.score(r, hyp)[k].fmeasure for r in refs) / len(EN_HYPS)
    got = metrics.rouge(EN_HYPS, EN_REFS)
    assert got.keys() == expect.keys()
    for k in expect:
        assert got[k] == pytest.approx(expect[k], abs=1e-12)
    # one reference each: exactly rouge-score's score()
    single = metrics.rouge(EN_HYPS[:1], [EN_REFS[0][:1]])
    assert single["rougeL"] == scorer.score(EN_REFS[0][0], EN_HYPS[0])["rougeL"].fmeasure
    assert metrics.CORPUS_METRICS["rouge"](EN_HYPS, EN_REFS, "en") == {**got, "signature": metrics.rouge_signature()}
    assert "stem:porter" in metrics.rouge_signature() and "han-char" in metrics.rouge_signature("zh")


def test_rouge_in_chinese_counts_characters_where_rouge_score_alone_gives_zero():
    plain = rouge_scorer.RougeScorer(["rouge1"]).score("我喜欢猫", "我喜欢猫")
    assert plain["rouge1"].fmeasure == 0.0  # its tokenizer keeps only a-z0-9
    got = metrics.rouge(["我喜欢猫。"], [["我喜欢狗"]], lang="zh")
    # tokens 我 喜 欢 猫 vs 我 喜 欢 狗: 3/4 unigrams; bigrams 我喜 喜欢 of 3; LCS 3 of 4
    assert got["rouge1"] == pytest.approx(0.75)
    assert got["rouge2"] == pytest.approx(2 / 3)
    assert got["rougeL"] == pytest.approx(0.75)
    assert metrics.ChineseRougeTokenizer().tokenize("用GPT4模型, 2024年!") == ["用", "gpt4", "模", "型", "2024", "年"]


def test_rouge_refuses_a_language_it_cannot_tokenise():
    with pytest.raises(LmstackError, match="lang 'fi'.*en, zh"):
        metrics.rouge(["a"], [["a"]], lang="fi")


def test_exact_match_follows_lm_eval_options():
    assert metrics.exact_match("Paris", ["paris"]) == 0.0
    assert metrics.exact_match("Paris", ["paris"], ignore_case=True) == 1.0
    assert metrics.exact_match("Paris!", ["Paris"], ignore_punctuation=True) == 1.0
    assert metrics.exact_match("Paris", ["London", "Paris"]) == 1.0  # any reference
    assert metrics.exact_match("room 101", ["room"], ignore_numbers=True) == 0.0  # "room " != "room"
    # GSM8K: the options strip commas, "$", everything up to "#### " and a final period, in that order
    gold = "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 1,007"
    assert metrics.exact_match("1007", [gold], **GSM8K_EXACT_MATCH) == 1.0
    assert metrics.exact_match("$1,007.", [gold], **GSM8K_EXACT_MATCH) == 1.0
    assert metrics.exact_match("1007.0", [gold], **GSM8K_EXACT_MATCH) == 0.0
    assert metrics.exact_match("[invalid]", [gold], **GSM8K_EXACT_MATCH) == 0.0


def test_squad_and_cmrc_scores_share_qa_implementation():
    assert metrics.squad_em("the Denver Broncos!", ["Denver Broncos"]) == 1.0
    assert metrics.squad_f1("a cat sat down", ["the cat sat", "dog"]) == pytest.approx(0.8)
    assert metrics.squad_em("", []) == 1.0  # no reference: unanswerable
    # CMRC: characters, longest common substring: 甲乙丙丁 vs 甲丙丁 -> P 2/3, R 2/4
    assert metrics.squad_f1("甲丙丁", ["甲乙丙丁"], lang="zh") == pytest.approx(4 / 7)
    assert metrics.squad_em("《红楼梦》", ["红楼梦"], lang="zh") == 1.0
    assert metrics.accuracy(2, [2]) == 1.0 and metrics.accuracy("1", [0]) == 0.0


def test_sample_metric_binds_options_and_names_bad_ones():
    em = metrics.sample_metric("exact_match", lang="zh", ignore_case=True, aggregation="mean", higher_is_better=True)
    assert em("ABC", ["abc"]) == 1.0
    f1 = metrics.sample_metric("squad_f1", lang="zh")
    assert f1("甲丙丁", ["甲乙丙丁"]) == pytest.approx(4 / 7)
    with pytest.raises(LmstackError, match="ignore_cases.*valid: ignore_case"):
        metrics.sample_metric("exact_match", ignore_cases=True)
    with pytest.raises(LmstackError, match=r"regexes_to_ignore '\(' does not compile"):
        metrics.sample_metric("exact_match", regexes_to_ignore=["("])
    with pytest.raises(LmstackError, match="'bleuu'.*exact_match"):
        metrics.sample_metric("bleuu")


def test_bootstrap_interval():
    assert metrics.bootstrap_ci([1.0] * 50) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(1)
    scores = (rng.random(400) < 0.5).astype(float).tolist()
    mean, low, high = metrics.bootstrap_ci(scores, n_boot=2000, seed=3)
    assert mean == pytest.approx(np.mean(scores)) and low < mean < high
    # the percentile interval of a mean of 400 coin flips is close to the normal one: +-1.96 * sd / sqrt(n)
    half = 1.96 * np.std(scores) / math.sqrt(len(scores))
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert metrics.bootstrap_ci(scores, n_boot=2000, seed=3) == (mean, low, high)  # seeded
    assert metrics.bootstrap_ci(scores, n_boot=2000, seed=4) != (mean, low, high)
    with pytest.raises(LmstackError):
        metrics.bootstrap_ci([])
