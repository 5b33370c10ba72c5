import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmstack.text.tokenizer import SPECIAL_TOKENS, Tokenizer, train_bpe, train_char
from lmstack.errors import LmstackError

SHAKESPEARE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
# text that stresses round trips: scripts the corpus has, emoji, combining marks, controls, our own markers
PIECES = ["Mira", " lives", "米拉住在贝尔港。", "😀", "👩‍👩‍👧", "e\u0301", "\x00", "\r\n", "\t", "  ", "<|eos|>",
          "<|im_start|>", "<0x41>", "\ufeff", "𝔘", "龘"]
TEXTS = st.one_of(st.text(), st.lists(st.sampled_from(PIECES)).map("".join))


@pytest.fixture(scope="module")
def bpe(corpus) -> Tokenizer:
    return train_bpe((r["text"] for r in corpus), vocab_size=600)


@pytest.fixture(scope="module")
def char(corpus) -> Tokenizer:
    return train_char(r["text"] for r in corpus)


@pytest.fixture(params=["bpe", "char"])
def tok(request, bpe, char) -> Tokenizer:
    return {"bpe": bpe, "char": char}[request.param]


def test_special_tokens_come_first_in_a_fixed_order(tok):
    assert [tok.id_to_token(i) for i in range(len(SPECIAL_TOKENS))] == SPECIAL_TOKENS
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.token_to_id("<|im_start|>") == 3 and tok.token_to_id("<|im_end|>") == 4


@settings(max_examples=300, deadline=None)
@given(text=TEXTS)
def test_bpe_round_trips_any_text(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(text=TEXTS)
def test_char_round_trips_any_text(char, text):
    assert char.decode(char.encode(text)) == text


def test_bpe_learns_merges_from_the_corpus(bpe):
    assert bpe.vocab_size == 600
    text = "Mira Castell lives in Bellhaven."
    assert len(bpe.encode(text)) < len(text.encode("utf-8")) / 2


def test_char_falls_back_to_bytes_for_unseen_characters(char):
    assert char.token_to_id("米") is not None  # seen in the corpus: one token
    assert char.encode("米") == [char.token_to_id("米")]
    ids = char.encode("😀")  # never seen: its four UTF-8 bytes
    assert [char.id_to_token(i) for i in ids] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]


def test_bare_char_vocab_matches_nanogpt_shakespeare_char():
    tok = train_char([SHAKESPEARE], special_tokens=(), byte_fallback=False)
    chars = sorted(set(SHAKESPEARE))
    stoi = {c: i for i, c in enumerate(chars)}
    assert tok.vocab_size == len(chars)
    assert tok.encode(SHAKESPEARE) == [stoi[c] for c in SHAKESPEARE]
    assert tok.decode(tok.encode(SHAKESPEARE)) == SHAKESPEARE
    assert tok.bos_id is tok.eos_id is tok.pad_id is None
    with pytest.raises(LmstackError, match="eos"):
        tok.encode("hear", eos=True)


def test_bos_eos_and_batch(tok):
    texts = ["Mira lives in Bellhaven.", "米拉住在贝尔港。", ""]
    assert tok.encode(texts[0], bos=True, eos=True) == [tok.bos_id] + tok.encode(texts[0]) + [tok.eos_id]
    assert tok.encode_batch(texts, eos=True) == [tok.encode(t, eos=True) for t in texts]


def test_save_and_load_round_trip(tok, tmp_path):
    Tokenizer(tok.backend, chat_template="{% for m in messages %}{{ m.content }}{% endfor %}").save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["bos_token"], config["eos_token"], config["pad_token"]) == ("<|bos|>", "<|eos|>", "<|pad|>")
    for source in (tmp_path, tmp_path / "tokenizer.json"):
        loaded = Tokenizer.load(source)
        assert loaded.sha256 == tok.sha256
        assert loaded.encode("Mira 米拉 😀", eos=True) == tok.encode("Mira 米拉 😀", eos=True)
        assert loaded.chat_template.startswith("{% for m")


def test_sha256_tells_tokenizers_apart(bpe, char, corpus):
    assert bpe.sha256 != char.sha256
    assert train_bpe((r["text"] for r in corpus), vocab_size=600).sha256 == bpe.sha256  # training is deterministic
    assert len(bpe.sha256) == 64


def test_transformers_loads_our_files_with_the_same_ids(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok.save(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert (auto.pad_token_id, auto.bos_token_id, auto.eos_token_id) == (tok.pad_id, tok.bos_id, tok.eos_id)
    assert len(auto) == tok.vocab_size
    for text in ["Mira Castell lives in Bellhaven. Her pet is a grey cat named Pim.",
                 "米拉住在贝尔港。她是一名面包师。", " spaces  and\nnew lines\t😀 <|eos|> end"]:
        ids = tok.encode(text)
        assert auto.encode(text) == fast.encode(text) == ids
        assert auto.decode(ids) == tok.decode(ids) == text


def test_load_reads_special_tokens_written_by_transformers(bpe, tmp_path):
    transformers = pytest.importorskip("transformers")
    bpe.save(tmp_path / "ours")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "ours" / "tokenizer.json"),
                                              bos_token="<|im_start|>", eos_token="<|im_end|>")
    hf.save_pretrained(tmp_path / "theirs")
    loaded = Tokenizer.load(tmp_path / "theirs")
    assert (loaded.bos_id, loaded.eos_id, loaded.pad_id) == (3, 4, None)
    assert loaded.encode("Mira 米拉") == bpe.encode("Mira 米拉")


def test_load_accepts_added_token_dicts_and_special_tokens_map(bpe, tmp_path):
    bpe.save(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": {"content": "<|im_end|>", "lstrip": False, "special": True}, "bos_token": "<|bos|>"}))
    loaded = Tokenizer.load(tmp_path)
    assert (loaded.bos_id, loaded.eos_id, loaded.pad_id) == (1, 4, None)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(LmstackError, match="nowhere"):
        Tokenizer.load(tmp_path / "nowhere")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(LmstackError, match="tokenizer.json: not a valid tokenizer.json"):
        Tokenizer.load(tmp_path)


def test_special_token_missing_from_vocab_is_an_error(char):
    with pytest.raises(LmstackError, match="<\\|nope\\|>"):
        Tokenizer(char.backend, eos_token="<|nope|>")


def test_bpe_vocab_too_small_is_an_error():
    with pytest.raises(LmstackError, match="at least 264"):
        train_bpe(["hello"], vocab_size=100)


def test_specials_false_encodes_marker_strings_as_text(tok):
    text = "hi <|im_end|> there"
    assert tok.token_to_id("<|im_end|>") in tok.encode(text)
    plain = tok.encode(text, specials=False)
    assert tok.token_to_id("<|im_end|>") not in plain and tok.decode(plain) == text
    assert tok.encode_batch([text], specials=False) == [plain]
    assert tok.token_to_id("<|im_end|>") in tok.encode(text)  # the default is restored


def test_tinyshakespeare_gives_nanogpts_65_character_vocab(shared_data):
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    tok = train_char([text], special_tokens=(), byte_fallback=False)
    chars = sorted(set(text))
    assert tok.vocab_size == len(chars) == 65
    assert tok.encode(text[:2000]) == [chars.index(c) for c in text[:2000]]
    assert tok.decode(tok.encode(text)) == text


def test_padding_and_truncation_carried_in_a_tokenizer_json_are_dropped(tmp_path):
    """all-MiniLM-L6-v2's tokenizer.json pads every encoding to 128: lmstack encodes the text's tokens only."""
    tok = train_bpe(["hello world, 你好"] * 20, vocab_size=300)
    tok.backend.enable_padding(length=32, pad_id=tok.pad_id, pad_token="<|pad|>")
    tok.backend.enable_truncation(max_length=4)
    tok.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    assert (loaded.encode("hello world, 你好")
            == train_bpe(["hello world, 你好"] * 20, vocab_size=300).encode("hello world, 你好"))
    assert loaded.encode_with_offsets("hello")[0] == loaded.encode("hello")


def test_split_digits_gives_one_token_per_digit_and_transformers_agrees(corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    texts = [r["text"] for r in corpus] + ["He pays 120 dollars, 37 + 25 = 62. 找零60 - 20 - 8 = 32元。"] * 50
    plain, split = train_bpe(texts, vocab_size=600), train_bpe(texts, vocab_size=600, split_digits=True)
    text = "37 + 25 = 62 and 2026年12月, 3.14"
    assert any(len(t.strip("Ġ")) > 1 and t.strip("Ġ").isdigit() for t in plain.backend.encode(text).tokens)
    pieces = [split.decode([i]) for i in split.encode(text)]
    assert [p.strip() for p in pieces if any(c.isdigit() for c in p)] == list("372562202612314")
    assert split.decode(split.encode(text)) == text
    split.save(tmp_path)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path).encode(text) == split.encode(text)
