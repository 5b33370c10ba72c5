"""Prompt-based QA with a masked language model, after PET (Schick & Schütze 2021).

A *pattern* turns the input into a cloze sentence with a ``{mask}`` slot ("Mira lives in {mask}."); a
*verbalizer* names each label (or candidate answer) by a word. A candidate's score is the MLM's
log-probability of its word's tokens at the mask positions, one mask per token, averaged over its tokens,
so the prediction is the label whose word best fills the blank, with no task head at all. ``pet_loss`` is
PET's training objective: cross-entropy over the labels' scores, which fine-tunes the MLM through the pattern.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lmstack.errors import LmstackError
from lmstack.model.encoder_text import specials
from lmstack.model.heads import EncoderForMaskedLM
from lmstack.model.families.bert import load_encoder
from lmstack.text.tokenizer import Tokenizer

SLOT = "{mask}"


def cloze_inputs(tokenizer: Tokenizer, pattern: str, word: str) -> tuple[list[int], list[int], list[int]]:
    """(input ids framed by [CLS]/[SEP], mask positions, the word's token ids) for ``word`` in the slot.
    A space before the slot belongs to the word, as a byte-level BPE tokenizer would see it."""
    if pattern.count(SLOT) != 1:
        raise LmstackError(f"a cloze pattern needs exactly one {SLOT} slot: {pattern!r}")
    sp = specials(tokenizer)
    if sp.mask_id is None:
        raise LmstackError("the tokenizer has no mask token, which cloze scoring needs")
    left, right = pattern.split(SLOT)
    space = left[len(left.rstrip(" ")):]
    word_ids = tokenizer.encode(space + word, specials=False)
    if not word_ids:
        raise LmstackError("a verbalizer word is empty")
    head = [sp.cls_id, *tokenizer.encode(left.rstrip(" "), specials=False)]
    ids = head + [sp.mask_id] * len(word_ids) + tokenizer.encode(right, specials=False) + [sp.sep_id]
    return ids, list(range(len(head), len(head) + len(word_ids))), word_ids


def cloze_scores(model: EncoderForMaskedLM, tokenizer: Tokenizer, pattern: str, words: list[str]) -> torch.Tensor:
    """Mean log-probability of each word's tokens at the masks of ``pattern`` (one batch row per word): [W]."""
    rows = [cloze_inputs(tokenizer, pattern, w) for w in words]
    T = max(len(ids) for ids, _, _ in rows)
    pad = specials(tokenizer).pad_id
    input_ids = torch.full((len(rows), T), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (ids, _, _) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention[i, :len(ids)] = 1
    logp = model(input_ids, attention).float().log_softmax(-1)
    return torch.stack([logp[i, pos, word].mean() for i, (_, pos, word) in enumerate(rows)])


@torch.no_grad()
def cloze_answer(model: EncoderForMaskedLM, tokenizer: Tokenizer, pattern: str,
                 candidates: list[str]) -> tuple[int, list[float]]:
    """The candidate that best fills ``pattern``'s slot, and every candidate's score."""
    model.eval()
    scores = cloze_scores(model, tokenizer, pattern, candidates).tolist()
    return max(range(len(scores)), key=scores.__getitem__), scores


def pet_loss(model: EncoderForMaskedLM, tokenizer: Tokenizer, pattern: str, verbalizer: list[str],
             label: int) -> torch.Tensor:
    """PET's objective for one input: cross-entropy of the softmax over the verbalizer words' scores."""
    return F.cross_entropy(cloze_scores(model, tokenizer, pattern, verbalizer)[None], torch.tensor([label]))


def cloze(pattern: str, *, model: Path, candidates: str) -> dict:
    """Answer a cloze question with a masked language model: which candidate best fills the {mask} slot.

    Args:
        pattern: a sentence with one {mask} slot, e.g. "Mira lives in {mask}."
        model: MLM folder (lmstack train --objective mlm, or any BertForMaskedLM)
        candidates: comma-separated candidate words (a verbalizer), e.g. "Bellhaven,Fernvale"
    """
    words = [w.strip() for w in candidates.split(",") if w.strip()]
    if len(words) < 2:
        raise LmstackError(f"--candidates: give two or more comma-separated words, got {candidates!r}")
    net, tok = load_encoder(model, head="mlm")
    if tok is None:
        raise LmstackError(f"{model}: no tokenizer.json beside the model")
    best, scores = cloze_answer(net, tok, pattern, words)
    return {"pattern": pattern, "answer": words[best], "scores": dict(zip(words, scores))}
