"""Incremental text: complete characters only, stop strings cut and never shown, streaming == generate."""

from __future__ import annotations

import pytest

from lmstack.generate import GenerationConfig, generate, stream
from lmstack.generate.api import pieces
from lmstack.text.stream import TextStream

CHINESE = "凯尔河镇以盐和琥珀贸易为生。🙂 hello"


def byte_tokens(tokenizer, text: str) -> list[int]:
    """``text`` one byte per token (byte-level BPE has a token for every byte): CJK characters span three."""
    return [tokenizer.token_to_id(byte) for i in tokenizer.encode(text) for byte in tokenizer.id_to_token(i)]


def test_stream_emits_only_complete_characters(tokenizer):
    ids = byte_tokens(tokenizer, CHINESE)
    assert len(ids) > len(CHINESE)  # characters really are split across tokens
    s = TextStream(tokenizer)
    shown = [s.push(i) for i in ids] + [s.finish()]
    assert "".join(shown) == CHINESE
    assert all("\ufffd" not in piece for piece in shown)
    assert sum(piece == "" for piece in shown) >= 2 * 14  # the first two bytes of each CJK character wait


@pytest.mark.parametrize("text, stop, expected", [
    ("abc\n\nxyz", ["\n\n"], "abc"),
    ("a\nb\nc", ["\n\n"], "a\nb\nc"),  # a lone newline is released once it proves not to start a stop string
    ("盐和琥珀贸易", ["琥珀", "和"], "盐"),  # the earliest stop string wins
    ("x END y", ["END", "x"], ""),
])
def test_stop_strings_are_cut_and_never_shown(tokenizer, text, stop, expected):
    s = TextStream(tokenizer, stop)
    shown = []
    for i in byte_tokens(tokenizer, text):
        shown.append(s.push(i))
        if s.done:
            break
    shown.append(s.finish())
    assert "".join(shown) == s.text == expected
    assert s.done


def test_generate_trims_at_a_stop_string(text_model, tokenizer):
    free = generate(text_model, tokenizer, "hello", max_new_tokens=30)
    stop = free[10:12]
    cut = generate(text_model, tokenizer, "hello", max_new_tokens=30, stop=[stop])
    assert cut == free[:free.index(stop)]


@pytest.mark.parametrize("config", [GenerationConfig(max_new_tokens=40),
                                    GenerationConfig(max_new_tokens=40, do_sample=True, top_p=0.95, seed=3),
                                    GenerationConfig(max_new_tokens=20, num_beams=3)])
def test_streaming_concatenates_to_the_generated_text(text_model, tokenizer, config):
    for prompt in ("你好，", "The river"):
        assert "".join(stream(text_model, tokenizer, prompt, config)) == generate(text_model, tokenizer, prompt, config)


def test_a_batch_gives_each_prompt_its_own_text(text_model, tokenizer):
    prompts = ["你好，世界", "The river town of", "a"]
    batch = generate(text_model, tokenizer, prompts, max_new_tokens=25)
    assert batch == [generate(text_model, tokenizer, p, max_new_tokens=25) for p in prompts]


def test_decoding_stops_once_every_row_has_met_a_stop_string(text_model, tokenizer):
    free = generate(text_model, tokenizer, "hello", max_new_tokens=60)
    streams = [TextStream(tokenizer, [free[5:7]])]
    list(pieces(text_model, tokenizer, ["hello"], GenerationConfig(max_new_tokens=60), streams))
    assert len(streams[0].ids) < 20
