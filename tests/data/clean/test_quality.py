"""Each Gopher and C4 rule on hand-made documents that pass and fail it, in English and Chinese."""

import pytest

from lmstack.data.clean import c4, gopher
from lmstack.data.clean.config import C4Config, CleanConfig, GopherConfig
from lmstack.data.clean.words import Words

G, C = GopherConfig(), C4Config()  # the curated profile (the default)
WEB = CleanConfig.preset("web")
GW, CW = WEB.gopher, WEB.c4  # the rules as published
GOOD_EN = ("The history of the river valley is long, and the people who lived there have told it in many ways. "
           "Farmers and traders came to the valley with their families, and they built small towns along the water. "
           "Over the years the towns grew into cities that were connected by roads and bridges of stone.")
GOOD_ZH = ("这条河谷的历史很长，生活在那里的人们用许多方式讲述它。农民和商人带着家人来到河谷，"
           "在水边建起了小镇。多年以后，这些小镇发展成了城市，城市之间由石头修建的道路和桥梁相连。"
           "今天，人们仍然喜欢在河边散步，也会给孩子讲起这些古老的故事。")


def en(text):
    return Words(text, "en")


def zh(text, mode="jieba"):
    return Words(text, "zh", mode)


def test_good_documents_pass_every_rule():
    for w in (en(GOOD_EN), zh(GOOD_ZH), zh(GOOD_ZH, "chars")):
        for name, rule in {**gopher.REPETITION, **gopher.QUALITY}.items():
            assert rule(w, G) is None, (name, w.cjk_words)
        for name, rule in {**c4.BEFORE_LINES, **c4.AFTER_LINES}.items():
            assert rule(w, C) is None, name


def test_chinese_words_come_from_jieba_or_characters():
    w = zh("我爱北京天安门。\n今天天气不错，Python很好！")
    assert w.line_words == [["我", "爱", "北京", "天安门"], ["今天天气", "不错", "Python", "很", "好"]]
    assert zh("我爱北京。", "chars").words == ["我", "爱", "北", "京"]
    assert en("Hello,  world!\nbye").line_words == [["Hello,", "world!"], ["bye"]]


def test_word_count():
    assert "words outside" in gopher.word_count(en("too short"), G)
    assert gopher.word_count(en(" ".join(["word"] * 50)), G) is None
    assert "words outside" in gopher.word_count(zh("太短了。"), G)
    assert gopher.word_count(en("a b c"), GopherConfig(word_count=[1, 2])) is not None


def test_mean_word_length():
    assert "mean word length" in gopher.mean_word_length(en("a b c d e f g h"), G)
    assert "mean word length" in gopher.mean_word_length(en("incomprehensibilities " * 5), G)
    assert gopher.mean_word_length(zh(GOOD_ZH), G) is None  # jieba words: the CJK bounds [1, 4]
    assert gopher.mean_word_length(zh("的" * 10, "chars"), G) is None  # characters: nothing to measure


def test_symbol_ratio():
    assert "'#'" in gopher.symbol_ratio(en("#tag #tag #tag some words here"), G)
    assert gopher.symbol_ratio(en("wait... " + "word " * 30), G) is None
    assert gopher.symbol_ratio(zh("等等……" * 5 + "好"), G) is not None
    turns = "#Person1#: Are you ready to order now?\n#Person2#: Yes, a salad and a cup of tea, please."
    assert gopher.symbol_ratio(en(turns), G) is None  # speaker labels are markup in curated ...
    assert "0.235 '#'" in gopher.symbol_ratio(en(turns), GW)  # ... and four '#' in 17 words in web
    assert "0.235 '#'" in gopher.symbol_ratio(en(turns.replace("#:", "#")), G)  # no colon: a hashtag
    assert gopher.symbol_ratio(zh("#主持人#：欢迎大家来到今天的节目，我们今天聊一聊城市里的公园和绿地。"), G) is None
    assert gopher.symbol_ratio(zh("#城市公园# 欢迎大家来到今天的节目，我们今天聊一聊城市里的公园。"), G) is not None


def test_bullet_and_ellipsis_lines():
    bullets = "\n".join(f"• item number {i}" for i in range(10))
    assert "bullet" in gopher.bullet_lines(en(bullets), G)
    assert gopher.bullet_lines(en(bullets + "\n" + "\n".join(["A normal line."] * 2)), G) is None
    assert "ellipsis" in gopher.ellipsis_lines(en("and then...\nso...\nA full line."), G)
    assert "ellipsis" in gopher.ellipsis_lines(zh("然后……\n所以…\n好的。"), G)
    assert gopher.ellipsis_lines(en("one...\nA.\nB.\nC."), G) is None


def test_alpha_words():
    assert "have a letter" in gopher.alpha_words(en("1 2 3 4 5 6 7 8 9 word"), G)
    assert gopher.alpha_words(en("version 2 of the tool"), G) is None
    assert gopher.alpha_words(zh(GOOD_ZH), G) is None


def test_stop_words():
    assert "stop words" in gopher.stop_words(en("cats chase mice daily"), G)
    assert gopher.stop_words(en("The cat and the dog."), G) is None
    assert gopher.stop_words(zh(GOOD_ZH), G) is None
    assert "stop words" in gopher.stop_words(zh("苹果香蕉橘子葡萄西瓜"), G)


def test_duplicate_lines_and_paragraphs():
    lines = "\n".join(["Buy now and save."] * 4 + ["Something else entirely here."])
    assert "duplicate lines" in gopher.dup_lines(en(lines), G)
    assert "characters in duplicate lines" in gopher.dup_line_chars(en(lines), G)
    paras = "\n\n".join(["Same paragraph text here."] * 3 + ["Another one."])
    assert "duplicate paragraphs" in gopher.dup_paragraphs(en(paras), G)
    assert "characters in duplicate paragraphs" in gopher.dup_paragraph_chars(en(paras), G)
    zh_lines = "\n".join(["立即购买，优惠多多。"] * 4 + ["其他内容。"])
    assert gopher.dup_lines(zh(zh_lines), G) is not None


def test_top_ngram():
    text = "click here " * 20 + GOOD_EN
    assert "top 2-gram" in gopher.top_ngram(en(text), G)
    assert gopher.top_ngram_chars(en("a b c d"), 2) == 0.0  # nothing repeats
    assert gopher.top_ngram_chars(en("ab cd ab cd"), 2) == 1.0
    assert gopher.top_ngram(zh("点击这里" * 30 + GOOD_ZH), G) is not None


def test_dup_ngram_counts_overlaps_once():
    w = en("a b c d e a b c d e")  # the second 5-gram repeats the first: 5 of 10 words
    assert gopher.dup_ngram_chars(w, 5) == 0.5
    w = en("x x x x x x x")  # the repeats at words 1 and 2 overlap: words 1..6 are covered, once
    assert gopher.dup_ngram_chars(w, 5) == pytest.approx(6 / 7)
    assert "duplicated 5-grams" in gopher.dup_ngram(en(GOOD_EN + " " + GOOD_EN[:200]), G)
    assert gopher.dup_ngram(zh(GOOD_ZH + GOOD_ZH), G) is not None


def test_c4_page_rules():
    assert c4.lorem_ipsum(en("Intro. Lorem Ipsum dolor sit amet."), C)
    assert c4.curly_brace(en("function f() { return 1; }"), C)
    assert "sentences" in c4.min_sentences(en("Only one sentence here."), CW)
    assert c4.min_sentences(en("One. Two! Three? Four."), CW) is None
    assert c4.min_sentences(zh("第一句。第二句！第三句？"), CW) is None
    assert c4.min_sentences(zh("只有一句。"), CW) is not None
    assert c4.min_sentences(zh("只有一句。"), C) is None and c4.min_sentences(en("No mark at all"), C) is not None


def test_c4_line_rules_drop_lines_not_pages():
    text = ("Home | About | Contact\n"
            "This page needs JavaScript enabled to work properly today.\n"
            "We value the people who read this site every single day.\n"
            "Too short.\n"
            "By using this site you accept our cookie policy and terms.\n"
            "Is this line a question with enough words in it?\n"
            "This line trails off with an ellipsis and never ends...")
    kept, removed = c4.filter_lines(en(text), CW, set(c4.LINE_RULES))
    assert kept == ("We value the people who read this site every single day.\n"
                    "Is this line a question with enough words in it?")
    assert [r for r, _ in removed] == ["c4.terminal_punct", "c4.javascript", "c4.line_words", "c4.policy",
                                       "c4.terminal_punct"]


def test_c4_line_rules_chinese_and_switches():
    text = "首页 | 关于我们\n河谷的历史很长，人们用许多方式讲述它。\n请启用JavaScript以查看此页面。"
    kept, removed = c4.filter_lines(zh(text), CW, set(c4.LINE_RULES))
    assert kept == "河谷的历史很长，人们用许多方式讲述它。"
    assert {r for r, _ in removed} == {"c4.terminal_punct", "c4.javascript"}
    kept, removed = c4.filter_lines(zh(text), CW, set(c4.LINE_RULES) - {"c4.terminal_punct", "c4.javascript"})
    assert removed == [("c4.line_words", "首页 | 关于我们")]
