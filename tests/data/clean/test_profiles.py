"""The regressions the curated profile fixes, each against the web profile (the rules as published), and the
curated profile on samples of real Chinese abstracts and DialogSum dialogues (skip without ../shared/data)."""

import json
import random
from pathlib import Path

import lmstack
from lmstack.config import build, load_yaml
from lmstack.data.clean import c4, gopher
from lmstack.data.clean.config import CleanConfig
from lmstack.data.clean.pipeline import Cleaner
from lmstack.data.clean.readers import Doc
from lmstack.data.clean.report import Stats
from lmstack.data.clean.words import Words

WEB, CURATED = CleanConfig.preset("web"), CleanConfig()
# A made-up abstract in the style of CSL's: ASCII punctuation, the topic term named five times.
ABSTRACT = ("针对城市道路网络中交通流量信息采集成本高、覆盖不足的问题,本文研究了交通检测器的"
            "优化布置方法.首先分析了动态交通分配和动态OD估计对检测数据的要求,提出了交通检测器"
            "布置的基本原则;然后从预算约束、路段覆盖程度和关键路段检测等方面建立了交通检测器优化"
            "布置模型,并采用遗传算法对交通检测器优化布置模型进行求解.算例结果表明,所提出的交通检"
            "测器优化布置模型能够在有限预算下显著提高路网流量信息的覆盖率,降低了检测成本,为交通检"
            "测器优化布置提供了一种可行的方法.")


def test_chinese_sentences_ended_by_an_ascii_period_are_sentences():
    w = Words("采用修正的参数,建立了模型.仿真结果表明,该方法有效.本文(MRP).结论成立", "zh")
    assert c4.min_sentences(w, WEB.c4) is None  # 模型. 有效. ). (before 结论): three sentences
    assert "2 sentences" in c4.min_sentences(Words("长度为3.5米,宽2.0米.结论成立。", "zh"), WEB.c4)  # decimals are not
    assert "0 sentences" in c4.min_sentences(Words("Version 2.0 of e.g.the tool", "en"), WEB.c4)  # Latin only


def test_titles_ending_in_a_bracket_or_number_stay_in_curated():
    text = ("一种飞行器姿态控制方法（2019）\nResults of Study 2\n"
            "本文建立了飞行器姿态控制系统的数学模型。仿真验证了该方法的有效性。")
    w = Words(text, "zh")
    kept, removed = c4.filter_lines(w, CURATED.c4, set(c4.LINE_RULES))
    assert kept == text and removed == []
    kept, removed = c4.filter_lines(w, WEB.c4, set(c4.LINE_RULES))
    assert [r for r, _ in removed] == ["c4.terminal_punct", "c4.terminal_punct"]


def test_a_chinese_abstract_the_web_thresholds_drop_passes_curated():
    w = Words(ABSTRACT, "zh")
    assert "top 4-gram" in gopher.top_ngram(w, WEB.gopher)  # Gopher's English 0.16
    for rule in (*gopher.REPETITION.values(), *gopher.QUALITY.values()):
        assert rule(w, CURATED.gopher) is None, rule.__name__
    for cfg, fate in ((WEB, ("gopher_repetition", "gopher.top_ngram")), (CURATED, None)):
        failed = Cleaner(cfg).process(Doc("a:1", ABSTRACT), Stats())
        assert (failed[:2] if failed else None) == fate


def test_repetition_still_fails_curated():
    spam = ("交通检测器优化布置" * 30) + "。"
    assert gopher.top_ngram(Words(spam, "zh"), CURATED.gopher) is not None
    assert gopher.top_ngram(Words("cheap flights " * 25, "en"), CURATED.gopher) is not None
    twice = Words("本文论述了黑龙江省柯尔克孜族畜牧业经济的发展状况,认为畜牧业是"
                  "黑龙江省柯尔克孜族经济发展的突破口.", "zh")
    assert gopher.top_ngram(twice, WEB.gopher) is not None and gopher.top_ngram(twice, CURATED.gopher) is None


def test_curly_braces_per_word():
    prose = Words("设F是一个域,满足{a|a∈F}的集合记为S。"
                  + "本文证明了一个关于保迹映射的结果,并推广了已有的结论,给出了若干应用。" * 4,
                  "zh")  # set notation in prose: one brace in 60 words
    code = Words("function f(x) {\n  return {a: x};\n}\n", "en")
    assert c4.curly_brace(prose, WEB.c4) is not None and c4.curly_brace(prose, CURATED.c4) is None
    assert c4.curly_brace(code, CURATED.c4) is not None


def test_curated_keeps_95_percent_of_real_chinese_abstracts(shared_data):
    rows = (shared_data / "csl_title_summarisation_zh" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    sample = random.Random(0).sample([r.split("\t")[1] for r in rows if "\t" in r], 200)
    kept = {}
    for name, cfg in (("web", WEB), ("curated", CURATED)):
        cleaner = Cleaner(cfg)
        kept[name] = sum(cleaner.process(Doc(f"csl:{i}", t), Stats()) is None for i, t in enumerate(sample))
    assert kept["curated"] >= 0.95 * len(sample) and kept["web"] < 0.7 * len(sample)


# A made-up dialogue in DialogSum's shape: every turn opens with a "#PersonN#:" speaker label.
DIALOGUE = ("#Person1#: Good morning. I'd like to open a savings account, please.\n"
            "#Person2#: Of course. Do you have your passport with you?\n"
            "#Person1#: Yes, here it is. How long will it take?\n"
            "#Person2#: About ten minutes. Would you like a card with the account?\n"
            "#Person1#: Yes, please. Is there a fee for that?\n"
            "#Person2#: No, the first card is free. Sign here, please.\n"
            "#Person1#: Thanks. That was quick.")


def test_a_dialogue_with_speaker_labels_is_kept_by_curated():
    w = Words(DIALOGUE, "en")
    assert "'#' or ellipses per word" in gopher.symbol_ratio(w, WEB.gopher)  # 14 '#' in 67 words: 0.209
    for rule in (*gopher.REPETITION.values(), *gopher.QUALITY.values()):
        assert rule(w, CURATED.gopher) is None, rule.__name__
    assert Cleaner(WEB).process(Doc("d:1", DIALOGUE), Stats())[:2] == ("gopher_quality", "gopher.symbol_ratio")
    no_skip = CleanConfig.preset("curated", {"gopher": {"skip_speaker_labels": False}})  # the switch, alone
    assert Cleaner(no_skip).process(Doc("d:1", DIALOGUE), Stats())[:2] == ("gopher_quality", "gopher.symbol_ratio")
    assert Cleaner(CURATED).process(Doc("d:1", DIALOGUE), Stats()) is None


def test_speaker_label_is_exactly_a_line_opening_hash_name_hash_colon():
    found = [m.group().strip() for m in gopher.SPEAKER_LABEL.finditer(
        "#Person1#: hi\n  #主持人#：你好\n#A#:x\nsay #Person2#: no\n#Person 1#: no\n#话题# no\n#tag no\n##: no\n"
        "#" + "x" * 31 + "#: no")]
    assert found == ["#Person1#:", "#主持人#：", "#A#:"]


def test_hashtag_spam_is_still_dropped_by_curated():
    weibo = "\n".join(f"#双十一抢购# #{k}# 限时秒杀，快来看看吧！" for k in ("包邮", "正品", "特价", "五折", "团购"))
    tags = "Best deals today #sale #deal #cheap #free #shipping #buy #now #love #instagood #follow with the price"
    labelled_tags = "\n".join(f"#deal#: #sale #cheap #free #buy item {i} of the day" for i in range(6))
    for text, lang in ((weibo, "zh"), (tags, "en"), (labelled_tags, "en")):
        assert "'#'" in gopher.symbol_ratio(Words(text, lang), CURATED.gopher), text
        assert Cleaner(CURATED).process(Doc("s:1", text), Stats()) is not None
    assert Cleaner(CURATED).process(Doc("s:1", tags), Stats())[:2] == ("gopher_quality", "gopher.symbol_ratio")


def test_curated_keeps_95_percent_of_dialogsum(shared_data):
    lines = (shared_data / "dialogsum" / "dialogsum.dev.jsonl").read_text(encoding="utf-8").splitlines()
    sample = random.Random(0).sample([json.loads(line)["dialogue"] for line in lines], 200)
    kept = {}
    for name, cfg in (("web", WEB), ("curated", CURATED)):
        cleaner = Cleaner(cfg)
        kept[name] = sum(cleaner.process(Doc(f"ds:{i}", t), Stats()) is None for i, t in enumerate(sample))
    assert kept["curated"] >= 0.95 * len(sample) and kept["web"] < 0.3 * len(sample)


def test_profile_on_the_command_line_beats_a_file_that_spells_out_the_defaults():
    spelled_out = load_yaml(Path(lmstack.__file__).parent / "configs" / "clean.yaml")  # every curated key
    web = build(CleanConfig, spelled_out, "clean.yaml", {"profile": "web"})
    assert (web.profile, web.c4.min_sentences, web.gopher.word_count) == ("web", 3, [50, 100000])
    flagged = build(CleanConfig, spelled_out, "clean.yaml", {"profile": "web", "c4": {"min_sentences": 2}})
    assert flagged.c4.min_sentences == 2  # an explicit flag still wins over the profile
    in_file = build(CleanConfig, {**spelled_out, "profile": "web"}, "clean.yaml")
    assert (in_file.profile, in_file.gopher.word_count) == ("web", [10, 100000])  # the file's own keys win
