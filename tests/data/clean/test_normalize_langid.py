from lmstack.data.clean.config import LangIdConfig, NormalizeConfig
from lmstack.data.clean.langid import detect, han_ratio
from lmstack.data.clean.normalize import normalize

CFG = NormalizeConfig()


def test_nfkc_folds_fullwidth_and_ligatures():
    assert normalize("ＡＢＣ１２３ ﬁne ｘ²", CFG) == "ABC123 fine x2"
    assert normalize("他说：你好！", NormalizeConfig(keep_cjk_punct=False)) == "他说:你好!"  # plain NFKC


def test_nfkc_keeps_cjk_punctuation():
    kept = ("，。、；：？！…（）《》〈〉「」『』【】〔〕〜・“”‘’",
            "！＂＃＄％＆＇＊＋－．／＜＝＞＠［＼］＾＿｀｛｜｝～｟｠")
    for text in kept:  # U+3000-303F, the punctuation of U+FF01-FF60, U+2026
        assert normalize(text, CFG) == text
    assert normalize("他说：“你好！”……（注１）占５０％，ＡＩ。", CFG) == "他说：“你好！”……（注1）占50％，AI。"
    assert normalize("｡｢引用｣､", CFG) == "。「引用」、"  # half-width CJK punctuation takes its usual form
    assert normalize("第一章　总则", CFG) == "第一章 总则"  # the ideographic space is whitespace
    assert normalize("第一章　总则", NormalizeConfig(whitespace=False)) == "第一章　总则"
    assert normalize("é，ｅ́", CFG) == "é，é"  # composition still happens on both sides


def test_nfc_keeps_fullwidth_and_none_keeps_everything():
    assert normalize("ＡＢＣ", NormalizeConfig(unicode_form="NFC")) == "ＡＢＣ"
    assert normalize("e\u0301", NormalizeConfig(unicode_form="NFC")) == "é"
    assert normalize("e\u0301", NormalizeConfig(unicode_form="none")) == "e\u0301"


def test_mojibake_is_repaired_but_quotes_are_left_alone():
    assert normalize("The cafÃ© was nice", CFG) == "The café was nice"
    assert normalize("ä¸\xadæ–‡", CFG) == "中文"
    assert normalize("他说“你好”", NormalizeConfig(unicode_form="none")) == "他说“你好”"
    assert normalize("The cafÃ©", NormalizeConfig(fix_mojibake=False)) == "The cafÃ©"


def test_controls_whitespace_and_line_endings():
    text = "\ufeffHello\x00 \x07world\u200b!\r\nSecond\tline   here  \r\n\r\n\r\n\r\nThird\u2028Fourth  "
    assert normalize(text, CFG) == "Hello world!\nSecond line here\n\nThird\nFourth"
    assert normalize(" \n\t\x00 ", CFG) == ""


def test_whitespace_off_keeps_layout():
    cfg = NormalizeConfig(whitespace=False, strip_controls=False)
    assert normalize("a  b\r\n", cfg) == "a  b\r\n"


def test_langid_han_ratio_and_model():
    cfg = LangIdConfig()
    assert han_ratio("中文abc") == 0.4
    assert han_ratio("123 !!") == 0.0
    assert detect("今天天气很好，我们去公园散步吧。", cfg) == ("zh", 1.0)
    assert detect("The weather is lovely today and we are going for a walk in the park.", cfg)[0] == "en"
    assert detect("Le temps est magnifique aujourd'hui et nous allons nous promener dans le parc.", cfg)[0] == "fr"
    lang, _ = detect("今日はとても良い天気ですね。公園に行きましょう。", cfg)  # kana: Japanese, not Chinese
    assert lang == "ja"


def test_langid_reads_only_max_chars():
    text = "The weather is lovely today. " + "今天天气很好。" * 200
    assert detect(text, LangIdConfig(max_chars=25))[0] == "en"
    assert detect(text, LangIdConfig())[0] == "zh"
