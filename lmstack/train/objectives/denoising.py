"""Denoising objectives of an encoder-decoder (T5 family): span corruption (Raffel et al. 2020), BART's text
infilling (Lewis et al. 2020) and UL2's mixture of denoisers (Tay et al. 2022).

Each batch draws random windows of the token shards (the trainer's ``torch.Generator``, so a resumed run draws
the same), corrupts each with a noise function of ``lmstack.data.noise`` into (encoder inputs, targets), pads
the rows (inputs with pad and an attention mask, targets with -100) and is trained by teacher forcing: the
decoder reads ``decoder_start_token_id`` + the targets shifted right and predicts the targets,

    L = -1/|M| sum_{t in M} log p(y_t | y_<t, x~)   (M: the non-padding target positions, x~: the corrupted input)

The model is ``config.family`` built by the registry (``--model.family t5``), called as
``model(input_ids [B, S], decoder_input_ids [B, T], attention_mask [B, S]) -> logits [B, T, V]``; it is
checkpointed and saved as a model directory like any other (``CausalLM``'s files).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lmstack.data.noise import (MODE_TOKENS, UL2_DENOISERS, Denoiser, check_denoisers, draw_denoiser,
                                raw_length_for, span_corruption, text_infilling, ul2_example)
from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.text.tokenizer import INFILL_MASK, Tokenizer
from lmstack.train.objectives.causal import IGNORE, CausalLM, causal_lm_loss

Pair = tuple[torch.Tensor, torch.Tensor]
Window = Callable[[int], torch.Tensor]  # n -> n consecutive tokens of the split, drawn at random


def seq2seq_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Teacher-forced cross-entropy of the decoder, L = -1/|M| sum_{t in M} log softmax(logits_t)[y_t] over the
    target positions M = {t : y_t != -100} (T5's and BART's loss), in fp32."""
    return causal_lm_loss(logits, targets)


def teacher_forced_loss(model: nn.Module, batch: tuple[torch.Tensor, ...], pad_id: int
                        ) -> tuple[torch.Tensor, dict]:
    """``seq2seq_loss`` of an encoder-decoder on a batch (inputs, input mask, targets): the decoder reads the
    targets shifted right behind its start token (``config.decoder_start_token_id``, else ``pad_id``)."""
    inputs, mask, targets = batch
    start = getattr(model.config, "decoder_start_token_id", None)
    decoder_inputs = shift_right(targets, pad_id if start is None else start, pad_id)
    return seq2seq_loss(model(inputs, decoder_inputs, mask), targets), {}


def tokens_read(batch: tuple[torch.Tensor, ...]) -> int:
    """What an encoder-decoder batch (inputs, input mask, targets) counts for tokens/s: encoder + decoder tokens."""
    return int(batch[1].sum()) + int((batch[2] != IGNORE).sum())


def shift_right(targets: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Decoder inputs [B, T] for ``targets`` [B, T]: ``start_id``, then the targets but the last (-100 -> pad),
    as transformers' ``T5ForConditionalGeneration._shift_right``."""
    shifted = torch.cat([torch.full_like(targets[:, :1], start_id), targets[:, :-1]], dim=1)
    return shifted.masked_fill(shifted == IGNORE, pad_id)


def pad_pairs(pairs: Sequence[Pair], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids [B, S] padded with ``pad_id``, attention_mask [B, S] bool, targets [B, T] padded with -100)."""
    S, T = max(len(x) for x, _ in pairs), max(len(y) for _, y in pairs)
    inputs = torch.full((len(pairs), S), pad_id, dtype=torch.long)
    targets = torch.full((len(pairs), T), IGNORE, dtype=torch.long)
    for r, (x, y) in enumerate(pairs):
        inputs[r, : len(x)], targets[r, : len(y)] = x, y
    mask = torch.arange(S)[None] < torch.tensor([len(x) for x, _ in pairs])[:, None]
    return inputs, mask, targets


class SpanNoise:
    """T5 span corruption with ``density`` and ``mean_span``: windows of the most tokens whose corruption fits
    ``inputs_length`` encoder and ``targets_length`` decoder positions (T5's ``random_spans_helper``)."""

    def __init__(self, sentinels: Sequence[int], eos_id: int | None, inputs_length: int, targets_length: int,
                 density: float = 0.15, mean_span: float = 3.0):
        self.sentinels, self.eos_id, self.density, self.mean_span = list(sentinels), eos_id, density, mean_span
        self.length = raw_length_for(inputs_length, targets_length, density, mean_span)

    def __call__(self, window: Window, rng: torch.Generator) -> Pair:
        return span_corruption(window(self.length), self.sentinels, self.eos_id, self.density, self.mean_span, rng)


class InfillNoise:
    """BART text infilling (``ratio`` masked in Poisson(``lam``) spans, one ``<mask>`` each) of windows whose
    original (+ eos) fills the decoder's ``targets_length``; inputs longer than ``inputs_length`` (many
    zero-length spans) are cut there."""

    def __init__(self, mask_id: int, eos_id: int | None, inputs_length: int, targets_length: int,
                 ratio: float = 0.3, lam: float = 3.0):
        self.mask_id, self.eos_id, self.ratio, self.lam = mask_id, eos_id, ratio, lam
        self.inputs_length, self.length = inputs_length, min(inputs_length, targets_length) - 1

    def __call__(self, window: Window, rng: torch.Generator) -> Pair:
        inputs, targets = text_infilling(window(self.length), self.mask_id, self.eos_id, self.ratio, self.lam, rng)
        return inputs[: self.inputs_length], targets


class UL2Noise:
    """UL2's mixture: per example a denoiser drawn by weight; R / X are span corruption of windows that fit
    (after the mode token), S splits a window of ``min(inputs_length - 2, targets_length - 1) + 1`` tokens at a
    uniform point into prefix (inputs) and suffix (targets)."""

    def __init__(self, denoisers: Sequence[Denoiser], mode_ids: dict[str, int], sentinels: Sequence[int],
                 eos_id: int | None, inputs_length: int, targets_length: int):
        check_denoisers(denoisers)
        self.denoisers, self.mode_ids, self.sentinels, self.eos_id = list(denoisers), mode_ids, list(sentinels), eos_id
        s_length = min(inputs_length - 2, targets_length - 1) + 1
        self.lengths = [s_length if d.mode == "S" else raw_length_for(inputs_length - 1, targets_length, d.density,
                                                                      d.mean_span) for d in denoisers]

    def __call__(self, window: Window, rng: torch.Generator) -> Pair:
        i = self.denoisers.index(draw_denoiser(self.denoisers, rng))
        d = self.denoisers[i]
        return ul2_example(window(self.lengths[i]), d, self.mode_ids[d.mode], self.sentinels, self.eos_id, rng)


class DenoisingBatches:
    """Batches of (input_ids, attention_mask, targets) from random windows of ``shards`` corrupted by ``noise``
    (a ``SpanNoise``, ``InfillNoise`` or ``UL2Noise``); ``batch`` has the ``Batches`` signature."""

    def __init__(self, shards: TokenShards, noise: Callable[[Window, torch.Generator], Pair], pad_id: int):
        self.shards, self.noise, self.pad_id = shards, noise, pad_id

    def batch(self, batch_size: int, block: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
        def window(n: int) -> torch.Tensor:
            self.shards.check_block(n)
            start = int(torch.randint(len(self.shards) - n, (1,), generator=rng))
            return torch.from_numpy(self.shards.tokens(start, start + n).astype("int64"))
        return pad_pairs([self.noise(window, rng) for _ in range(batch_size)], self.pad_id)


def denoising_tokens(tokenizer: Tokenizer, where: str) -> dict:
    """The tokenizer's sentinels, infilling mask and mode ids; refused in one line when it has none."""
    sentinels = tokenizer.sentinel_ids
    if not sentinels:
        raise LmstackError(f"{where}: the tokenizer has no sentinel tokens (<extra_id_0> ...); run lmstack prepare "
                           "again with --sentinels 100")
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id
    return {"sentinels": sentinels, "mask_id": tokenizer.token_to_id(INFILL_MASK), "eos_id": tokenizer.eos_id,
            "pad_id": pad, "mode_ids": {m: tokenizer.token_to_id(t) for m, t in MODE_TOKENS.items()}}


class Denoising(CausalLM):
    """Teacher-forced seq2seq cross-entropy on ``DenoisingBatches`` of the train / val shards; subclasses choose
    the noise (``make_noise``). The encoder-decoder of ``model_config`` is built, checkpointed and saved as a
    model directory with ``tokenizer``."""

    def __init__(self, train: TokenShards, val: TokenShards, batch_size: int, block: int, model_config: ModelConfig,
                 tokenizer: Tokenizer):
        ids = denoising_tokens(tokenizer, str(train.directory))
        self.pad_id = ids["pad_id"]
        noise = self.make_noise(ids, block, block)
        super().__init__(DenoisingBatches(train, noise, self.pad_id), DenoisingBatches(val, noise, self.pad_id),
                         batch_size, block, model_config, tokenizer)

    def make_noise(self, ids: dict, inputs_length: int, targets_length: int) -> Callable[[Window, torch.Generator],
                                                                                          Pair]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        return teacher_forced_loss(model, batch, self.pad_id)

    def count(self, batch: tuple[torch.Tensor, ...]) -> int:
        return tokens_read(batch)


class SpanCorruption(Denoising):
    """T5's span corruption: noise density 0.15, mean span length 3, one sentinel per span."""

    density, mean_span = 0.15, 3.0

    def make_noise(self, ids: dict, inputs_length: int, targets_length: int) -> SpanNoise:
        return SpanNoise(ids["sentinels"], ids["eos_id"], inputs_length, targets_length, self.density, self.mean_span)


class Infilling(Denoising):
    """BART's text infilling: 30% of the tokens in Poisson(3) spans, each one ``<mask>``; the target is the
    original."""

    def make_noise(self, ids: dict, inputs_length: int, targets_length: int) -> InfillNoise:
        if ids["mask_id"] is None:
            raise LmstackError(f"the tokenizer has no {INFILL_MASK} token; run lmstack prepare again with --sentinels")
        return InfillNoise(ids["mask_id"], ids["eos_id"], inputs_length, targets_length)


class UL2(Denoising):
    """UL2's mixture of denoisers (``noise.UL2_DENOISERS``: R, X, X, S), each input led by its mode token."""

    def __init__(self, *args, denoisers: Sequence[Denoiser] = UL2_DENOISERS, **kwargs):
        self.denoisers = tuple(denoisers)  # read by make_noise, which the base's __init__ calls
        super().__init__(*args, **kwargs)

    def make_noise(self, ids: dict, inputs_length: int, targets_length: int) -> UL2Noise:
        missing = [m for m, i in ids["mode_ids"].items() if i is None]
        if missing:
            raise LmstackError(f"the tokenizer has no mode token {MODE_TOKENS[missing[0]]}; run lmstack prepare "
                               "again with --sentinels")
        return UL2Noise(self.denoisers, ids["mode_ids"], ids["sentinels"], ids["eos_id"], inputs_length,
                        targets_length)
