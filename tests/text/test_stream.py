"""TextStream's windowed incremental decoding releases exactly what decoding every token at once gives."""

from __future__ import annotations

import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import decoders, models, pre_tokenizers

from lmstack.text.stream import TextStream
from lmstack.text.tokenizer import Tokenizer, train_bpe

TEXT = ["The Blue Lantern is a restaurant in Fernvale. 蓝灯笼是一家餐馆，在蕨谷。",
        "Lena Varga 喜欢 读书 and tea."] * 20


@pytest.fixture(scope="module")
def byte_level() -> Tokenizer:
    return train_bpe(TEXT, vocab_size=320)


@pytest.fixture(scope="module")
def metaspace() -> Tokenizer:
    """A sentencepiece-style tokenizer: its decoder drops the space before the first word of a text."""
    backend = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<|endoftext|>"])
    backend.train_from_iterator(TEXT, trainer=trainer)
    return Tokenizer(backend, bos_token=None, eos_token="<|endoftext|>", pad_token=None)


def streamed(tokenizer: Tokenizer, ids: list[int], stop: list[str] = ()) -> tuple[str, TextStream]:
    stream = TextStream(tokenizer, stop)
    pieces = [stream.push(i) for i in ids if not stream.done]
    return "".join(pieces) + stream.finish(), stream


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_pieces_join_to_the_whole_decode(byte_level: Tokenizer, metaspace: Tokenizer, data) -> None:
    """Any token sequence (byte tokens splitting a Chinese character included): the released pieces join to
    decode(ids), and ``text`` is it."""
    for tokenizer in (byte_level, metaspace):
        ids = data.draw(st.lists(st.integers(2, tokenizer.vocab_size - 1), max_size=40))
        text, stream = streamed(tokenizer, ids)
        assert text == stream.text == tokenizer.decode(ids)


def test_a_split_character_waits_for_its_last_byte(byte_level: Tokenizer) -> None:
    """"灯" fed as its three byte symbols: the first two release nothing, the third the character."""
    symbols = _byte_symbols()
    stream = TextStream(byte_level)
    pieces = [stream.push(byte_level.token_to_id(symbols[b])) for b in "灯".encode()]
    assert pieces == ["", "", "灯"]


def test_stop_string_across_tokens(byte_level: Tokenizer) -> None:
    ids = byte_level.encode("The Blue Lantern is a restaurant")
    text, stream = streamed(byte_level, ids, stop=["Lantern"])
    assert text == stream.text == "The Blue "
    assert stream.done


def _byte_symbols() -> dict[int, str]:
    """GPT-2's byte -> printable symbol table (the byte-level alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table
