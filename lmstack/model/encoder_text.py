"""Text -> encoder inputs: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with segment ids, padded batches.

A BERT / sentence-transformers ``tokenizer.json`` (WordPiece) has ``[CLS] [SEP] [PAD] [MASK]``; a tokenizer
trained by lmstack has ``<|bos|> <|eos|> <|pad|> <|mask|>``, which then play the same roles.
"""

from __future__ import annotations

from dataclasses import dataclass

import tokenizers
import torch
from tokenizers import processors

from lmstack.text.tokenizer import BOS, EOS, MASK, PAD, Tokenizer
from lmstack.errors import LmstackError

BERT_SPECIALS = ("[CLS]", "[SEP]", "[PAD]", "[MASK]")


@dataclass(frozen=True)
class Specials:
    cls: str
    sep: str
    pad: str
    mask: str | None
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int | None


def specials(tokenizer: Tokenizer) -> Specials:
    """The tokens that frame, pad and mask encoder inputs: BERT's where the vocabulary has them, else ours."""
    names = BERT_SPECIALS if tokenizer.token_to_id("[CLS]") is not None else (BOS, EOS, PAD, MASK)
    ids = [tokenizer.token_to_id(t) for t in names]
    for name, i in zip(names[:3], ids[:3]):
        if i is None:
            raise LmstackError(f"the tokenizer has no {name} token, which encoder inputs need")
    mask = names[3] if ids[3] is not None else None
    return Specials(*names[:3], mask, *ids)


def with_framing(tokenizer: Tokenizer) -> Tokenizer:
    """``tokenizer`` with a post-processor that frames texts as ``encode_pairs`` does, so that ``transformers``
    and sentence-transformers tokenize a saved encoder's inputs identically; as is if it already has one."""
    if tokenizer.backend.post_processor is not None:
        return tokenizer
    s = specials(tokenizer)
    backend = tokenizers.Tokenizer.from_str(tokenizer.backend.to_str())
    backend.post_processor = processors.TemplateProcessing(
        single=f"{s.cls} $A {s.sep}", pair=f"{s.cls} $A {s.sep} $B:1 {s.sep}:1",
        special_tokens=[(s.cls, s.cls_id), (s.sep, s.sep_id)])
    return Tokenizer(backend, tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token,
                     tokenizer.model_max_length, tokenizer.chat_template)


def encode_pairs(tokenizer: Tokenizer, texts: list[str], pairs: list[str] | None = None,
                 max_len: int = 512) -> dict[str, torch.Tensor]:
    """Encode ``texts`` (and, for a cross-encoder, their ``pairs``) into right-padded tensors.

    Returns ``input_ids``, ``attention_mask`` (1 = real token) and ``token_type_ids`` (0 for the first text,
    1 for the second), each [N, T] with T the longest framed sequence, at most ``max_len``. Pairs that do not
    fit are cut longest-first, as ``transformers`` does. Special-token strings inside a text stay plain text.
    """
    if pairs is not None and len(pairs) != len(texts):
        raise LmstackError(f"encode_pairs: {len(texts)} texts but {len(pairs)} pairs")
    s = specials(tokenizer)
    firsts = tokenizer.encode_batch(texts, specials=False)
    seconds = tokenizer.encode_batch(pairs, specials=False) if pairs is not None else [None] * len(texts)
    rows, types = [], []
    for a, b in zip(firsts, seconds):
        if b is None:
            ids, seg = [s.cls_id, *a[:max_len - 2], s.sep_id], []
        else:
            la, lb = _longest_first(len(a), len(b), max_len - 3)
            ids = [s.cls_id, *a[:la], s.sep_id, *b[:lb], s.sep_id]
            seg = [1] * (lb + 1)
        rows.append(ids)
        types.append([0] * (len(ids) - len(seg)) + seg)
    T = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), T), s.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
    token_type_ids = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (ids, seg) in enumerate(zip(rows, types)):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention_mask[i, :len(ids)] = 1
        token_type_ids[i, :len(ids)] = torch.tensor(seg)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def _longest_first(la: int, lb: int, budget: int) -> tuple[int, int]:
    """Lengths that fit ``budget``, as ``tokenizers`` cuts: the shorter text stays whole if at most half the
    budget, else both get half (an odd budget's extra token to the longer text; on a tie, to the second)."""
    if la + lb <= budget:
        return la, lb
    short = min(la, lb)
    keep_short = short if 2 * short <= budget else budget // 2
    return (budget - keep_short, keep_short) if la > lb else (keep_short, budget - keep_short)
