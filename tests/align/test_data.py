"""Preference records as ids: the answer is exactly what the chat template writes after the prompt, to the turn end."""

from __future__ import annotations

import pytest
import torch

from lmstack.align.data import answer_ids, draw, drop_long, encode_pairs, encode_prompts, encode_unpaired
from lmstack.data.preferences import Preference, PromptRecord, Unpaired
from lmstack.errors import LmstackError
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import train_bpe

TEXTS = ["What is two plus two?", "Four.", "Five.", "Sure! The answer is four.", "请用中文回答：二加二是多少？", "四。"]


@pytest.fixture(scope="module")
def chat() -> ChatFormat:
    return ChatFormat(train_bpe(TEXTS * 20, vocab_size=300))


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_answer_is_the_template_suffix_up_to_the_turn_end(chat):
    prompt = chat.encode(_user(TEXTS[0]))
    answer = answer_ids(chat, _user(TEXTS[0]), prompt, "Four.", "t:1")
    full = chat.encode([*_user(TEXTS[0]), {"role": "assistant", "content": "Four."}], add_generation_prompt=False)
    assert full[:len(prompt) + len(answer)] == prompt + answer
    assert answer[-1] in chat.end_ids and all(t not in chat.end_ids for t in answer[:-1])
    assert chat.tokenizer.decode(answer[:-1]) == "Four."
    assert answer_ids(chat, _user(TEXTS[0]), prompt, "", "t:1") == answer[-1:]  # a sampled answer may be empty


def test_pairs_share_the_prompt_and_are_cut_to_fit(chat):
    records = [Preference(_user(TEXTS[0]), TEXTS[3], "Five.", "t:1"),
               Preference(_user(TEXTS[4]), "四。", "五。", "t:2")]
    examples, stats = encode_pairs(chat, records, max_len=64)
    assert stats == {"pairs": 2, "truncated": 0, "dropped": 0}
    assert examples[0].prompt == chat.encode(_user(TEXTS[0])) and examples[0].chosen != examples[0].rejected
    short = len(examples[0].prompt) + 2
    cut, stats = encode_pairs(chat, records[:1], max_len=short)
    assert stats["truncated"] == 1 and len(cut[0].chosen) == len(cut[0].rejected) == 2


def test_bad_pairs_name_their_record(chat):
    with pytest.raises(LmstackError, match="t:7: chosen and rejected are the same answer"):
        encode_pairs(chat, [Preference(_user(TEXTS[0]), "Four.", "Four.", "t:7")], max_len=64)
    with pytest.raises(LmstackError, match="t:8: the prompt is .* no room"):
        encode_pairs(chat, [Preference(_user(TEXTS[0] * 4), "Four.", "Five.", "t:8")], max_len=8)
    with pytest.raises(LmstackError, match="t:9: the prompt is"):
        encode_prompts(chat, [PromptRecord(_user(TEXTS[0]), "t:9")], max_len=20, max_new_tokens=16)


def test_unpaired_and_draw(chat):
    examples, stats = encode_unpaired(chat, [Unpaired(_user(TEXTS[0]), "Four.", True, "t:1"),
                                             Unpaired(_user(TEXTS[0]), "Five.", False, "t:2")], max_len=64)
    assert stats["desirable"] == 1 and [e.label for e in examples] == [True, False]
    a, b = (draw(10, 5, torch.Generator().manual_seed(3)) for _ in range(2))
    assert a == b and all(0 <= i < 10 for i in a)


def test_drop_long_keeps_the_prompts_that_fit_and_counts_the_rest(chat):
    short, long = Preference(_user(TEXTS[0]), "Four.", "Five.", "t:1"), Preference(_user(TEXTS[0] * 6), "4", "5", "t:2")
    limit = len(chat.encode(short.prompt)) + 4
    kept, dropped = drop_long(chat, [short, long], limit, room=4)
    assert kept == [short] and dropped == 1
    encode_pairs(chat, kept, limit)  # what is kept encodes without an error
