"""Examples -> encoder inputs for a span head: ``[CLS] question [SEP] context window [SEP]``.

A context longer than fits is cut into overlapping windows (Devlin et al. 2019, section 4.2: the "doc
stride"), so every answer lies wholly inside at least one window. Each window keeps the character span
of its context tokens, which turns a predicted (start, end) token pair back into text; the answer's
character span becomes start/end token positions for training, or [CLS] (position 0) where the window does
not hold the whole answer, or the question has none (SQuAD v2's no-answer target).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmstack.errors import LmstackError
from lmstack.model.encoder_text import specials
from lmstack.qa.squad import SquadExample
from lmstack.text.tokenizer import Tokenizer


@dataclass
class Feature:
    """One window of one example."""
    example: int  # index into the example list the features were made from
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]  # context character span per token; None for question and specials
    start: int = 0  # answer's first token; 0 ([CLS]) = no answer in this window
    end: int = 0


def char_to_token(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """Token indices of the first and last token overlapping the characters [start, end), or None."""
    first = next((i for i, (s, e) in enumerate(offsets) if e > start), None)
    last = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < end), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def windows(n: int, size: int, stride: int) -> list[int]:
    """Start positions of windows of ``size`` tokens, ``stride`` apart, covering ``n`` tokens."""
    starts = [0]
    while starts[-1] + size < n:
        starts.append(starts[-1] + stride)
    return starts


def make_features(tokenizer: Tokenizer, examples: list[SquadExample], max_len: int = 384, doc_stride: int = 128,
                  max_query_len: int = 64, train: bool = False) -> list[Feature]:
    """Windows of every example. With ``train``, an answerable example whose answers could not be located
    in its context (start -1) makes no features: it has no span to learn from."""
    sp = specials(tokenizer)
    features = []
    for index, ex in enumerate(examples):
        located = [a for a in ex.answers if a.start >= 0]
        if train and ex.answers and not located:
            continue
        question = tokenizer.encode(ex.question, specials=False)[:max_query_len]
        ids, offsets = tokenizer.encode_with_offsets(ex.context)
        size = max_len - len(question) - 3
        if size < 1:
            raise LmstackError(f"max_len={max_len} leaves no room for the context after a {len(question)}-token "
                               f"question; raise max_len or lower max_query_len")
        span = None
        if located:
            a = located[0]
            span = char_to_token(offsets, a.start, a.start + len(a.text))
        head = [sp.cls_id, *question, sp.sep_id]
        for w in windows(len(ids), size, max(1, min(doc_stride, size))):
            chunk = ids[w:w + size]
            f = Feature(index, head + chunk + [sp.sep_id], [0] * len(head) + [1] * (len(chunk) + 1),
                        [None] * len(head) + list(offsets[w:w + size]) + [None])
            if span and w <= span[0] and span[1] < w + len(chunk):
                f.start, f.end = span[0] - w + len(head), span[1] - w + len(head)
            features.append(f)
    return features


def collate(features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask, token_type_ids [N, T], and start/end positions [N]."""
    T = max(len(f.input_ids) for f in features)
    input_ids = torch.full((len(features), T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(features), T), dtype=torch.long)
    token_type_ids = torch.zeros((len(features), T), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f.input_ids)
        input_ids[i, :n] = torch.tensor(f.input_ids)
        attention_mask[i, :n] = 1
        token_type_ids[i, :n] = torch.tensor(f.token_type_ids)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
            "start_positions": torch.tensor([f.start for f in features]),
            "end_positions": torch.tensor([f.end for f in features])}
