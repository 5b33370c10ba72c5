"""Prompt masking: the loss is taken on exactly the tokens the assistant wrote."""

from __future__ import annotations

import pytest
import torch

from lmstack.adapt.data import IGNORE, Example, SFTBatches, encode_all, encode_conversation
from lmstack.data.conversations import read_conversations
from lmstack.errors import LmstackError
from lmstack.text.tokenizer import train_bpe

CONVERSATION = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Kell?"},
                             {"role": "assistant", "content": "By the river."}, {"role": "user", "content": "谢谢"},
                             {"role": "assistant", "content": "不客气。"}]}


def test_labels_are_the_assistant_tokens_only():
    tok = train_bpe(["Where is Kell? By the river. 谢谢 不客气。 Be brief."] * 20, vocab_size=300)
    ex = encode_conversation(tok, CONVERSATION)
    assert len(ex.ids) == len(ex.labels)
    kept = [i for i, label in zip(ex.ids, ex.labels) if label != IGNORE]
    assert all(label in (IGNORE, i) for i, label in zip(ex.ids, ex.labels))
    assert tok.decode(kept) == "By the river.<|im_end|>\n不客气。<|im_end|>\n"
    assert "user" not in tok.decode(kept) and "assistant" not in tok.decode(kept)


def test_too_long_conversations_are_cut_or_skipped():
    tok = train_bpe(["Where is Kell? By the river. 谢谢 不客气。 Be brief."] * 20, vocab_size=300)
    full = encode_conversation(tok, CONVERSATION)
    first_reply = full.labels.index(next(label for label in full.labels if label != IGNORE))
    examples, stats = encode_all(tok, [CONVERSATION] * 2, max_len=first_reply + 2)
    assert stats == {"examples": 2, "truncated": 2, "skipped": 0}
    assert len(examples[0].ids) == first_reply + 3
    _, stats = encode_all(tok, [CONVERSATION, {"messages": CONVERSATION["messages"][:3]}], max_len=first_reply + 2)
    assert stats["truncated"] == 2
    short = {"messages": [{"role": "user", "content": "Where is Kell? " * 20},
                          {"role": "assistant", "content": "Here."}]}
    _, stats = encode_all(tok, [CONVERSATION, short], max_len=first_reply + 2)
    assert stats["skipped"] == 1


def test_batches_shift_targets_pad_and_repeat_with_the_seed():
    examples = [Example(list(range(1, n + 1)), [IGNORE] * (n // 2) + list(range(n // 2 + 1, n + 1)))
                for n in range(3, 40)]
    data = SFTBatches(examples, pad_id=0)
    x, y = data.batch(4, 64, torch.Generator().manual_seed(1))
    x2, y2 = data.batch(4, 64, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    for row_x, row_y in zip(x, y):
        n = int((row_x != 0).sum())
        assert row_x[:n].tolist() == list(range(1, n + 1))  # an example, right-padded
        real = row_y[:n][row_y[:n] != IGNORE]
        assert real.tolist() == list(range(n + 1 - len(real) + 1, n + 2))  # next tokens, assistant part only
        assert (row_y[n:] == IGNORE).all()
    lengths = [int((r != 0).sum()) for r in x]
    assert max(lengths) - min(lengths) <= 16  # grouped by length


def test_prompt_completion_records_are_plain_text_with_the_loss_on_the_completion(tmp_path):
    """trl's prompt-completion form: no chat template; prompt and completion encoded apart, as a harness scores."""
    tok = train_bpe(["Question: 2 + 3?\nAnswer: 5. 问：2 加 3？答：5。"] * 20, vocab_size=300)
    path = tmp_path / "pc.jsonl"
    path.write_text('{"prompt": "Question: 2 + 3?\\nAnswer:", "completion": " 5."}\n'
                    '{"prompt": "问：2 加 3？答：", "completion": "5。", "lang": "zh"}\n', encoding="utf-8")
    records = read_conversations(path, completions=True)
    assert records[1] == {"prompt": "问：2 加 3？答：", "completion": "5。", "lang": "zh"}
    examples, stats = encode_all(tok, records, max_len=64)
    ex = examples[0]
    prompt = tok.encode("Question: 2 + 3?\nAnswer:")
    assert ex.ids == prompt + tok.encode(" 5.") + [tok.eos_id]
    assert ex.labels == [IGNORE] * len(prompt) + tok.encode(" 5.") + [tok.eos_id]
    assert "<|im_start|>" not in tok.decode(ex.ids)
    with pytest.raises(LmstackError, match=r"pc.jsonl:1: a prompt-completion record, but this command needs"):
        read_conversations(path)
