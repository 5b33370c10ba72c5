"""Sequence-to-sequence fine-tuning on input -> output pairs (``data.pairs``: ``{"input", "output"}`` or alpaca).

* ``Seq2SeqFinetune``: an encoder-decoder (T5 family) reads the input with its encoder and is trained by teacher
  forcing on the output (+ eos): L = -1/|Y| sum_t log p(y_t | y_<t, x) (``denoising.seq2seq_loss``).
* ``PairFinetune``: a decoder reads input then output, the loss on the output (+ eos) alone; a prefix LM
  (``bidirectional_prefix``) reads the input as its bidirectional prefix, as it decodes.

``lmstack finetune BASE --data pairs.jsonl`` picks ``Seq2SeqFinetune`` when the base's family is an
encoder-decoder (its ``peft_task_type`` is ``SEQ_2_SEQ_LM``: ``adapt.finetune.OBJECTIVES``). Method: full
(LoRA through the family's linear slices where the method supports it). Inputs longer than the encoder's
context and outputs longer than the decoder's are cut (counted in ``truncated``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lmstack.adapt.objective import AdaptedPolicy
from lmstack.data.pairs import read_pairs
from lmstack.data.splits import hold_out
from lmstack.errors import LmstackError
from lmstack.model.hf import load_model
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.causal import IGNORE, CausalLM, causal_lm_loss
from lmstack.train.objectives.denoising import pad_pairs, teacher_forced_loss, tokens_read

Encoded = tuple[list[int], list[int]]  # (input ids, output ids + eos)


def encode_pairs(tokenizer: Tokenizer, pairs: list[tuple[str, str]], max_input: int, max_output: int
                 ) -> tuple[list[Encoded], int]:
    """Each pair as (input ids, output ids + eos), cut to ``max_input`` / ``max_output``; how many were cut."""
    out, truncated = [], 0
    for source, target in pairs:
        x = tokenizer.encode(source, specials=False)
        y = tokenizer.encode(target, specials=False) + [tokenizer.eos_id]
        truncated += len(x) > max_input or len(y) > max_output
        out.append((x[:max_input], y[:max_output]))
    return out, truncated


class PairBatches:
    """Uniform random draws of encoded pairs from a ``torch.Generator`` (a resumed run draws the same)."""

    def __init__(self, examples: list[Encoded], pad_id: int):
        if not examples:
            raise LmstackError("no pairs to train on")
        self.examples, self.pad_id = examples, pad_id

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, batch_size: int, block: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
        picks = torch.randint(len(self.examples), (batch_size,), generator=rng)
        return self.collate([self.examples[int(i)] for i in picks], block)

    def collate(self, rows: list[Encoded], block: int) -> tuple[torch.Tensor, ...]:
        """(input_ids [B, S], attention_mask [B, S], targets [B, T]) for an encoder-decoder."""
        return pad_pairs([(torch.tensor(x), torch.tensor(y)) for x, y in rows], self.pad_id)


class DecoderPairBatches(PairBatches):
    """Input then output in one row: (x [B, T], y [B, T] = next tokens, -100 but on the output, prefix_len [B])."""

    def collate(self, rows: list[Encoded], block: int) -> tuple[torch.Tensor, ...]:
        seqs = [(x + y)[: block + 1] for x, y in rows]
        starts = [max(len(x), 1) for x, _ in rows]  # the output's first token is predicted at position len(x) - 1
        T = max(len(r) for r in seqs) - 1
        x = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
        for r, (ids, p) in enumerate(zip(seqs, starts)):
            x[r, : len(ids) - 1] = torch.tensor(ids[:-1])
            y[r, p - 1: len(ids) - 1] = torch.tensor(ids[p:])
        return x, y, torch.tensor(starts)


class Seq2SeqFinetune(AdaptedPolicy, CausalLM):
    """Fine-tune the encoder-decoder in ``base`` with ``method`` on ``train`` pairs, validated on ``val`` (empty:
    a seeded ``val_fraction`` of ``train`` is held out); ``max_len``: tokens per input and per output (None: the
    model's context). ``fmt`` is accepted for ``lmstack finetune``'s signature (pairs have one format)."""

    batches = PairBatches

    def __init__(self, base: Path, method, tokenizer: Tokenizer, train: list[Path], val: list[Path],
                 batch_size: int, max_len: int | None = None, val_fraction: float = 0.05, fmt: str = "auto",
                 seed: int = 0):
        if tokenizer.eos_id is None:
            raise LmstackError(f"{base}: the tokenizer has no eos token to end outputs with")
        super().__init__(None, None, batch_size, 0, tokenizer=tokenizer)
        self.init_policy(base, method)
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id
        self.files, self.max_len, self.val_fraction, self.seed = (train, val), max_len, val_fraction, seed
        self.pairs = [p for path in train for p in read_pairs(path)]  # bad records refused before any file is written
        self.val_pairs = [p for path in val for p in read_pairs(path)]
        self.data_stats: dict = {}

    def load_base(self, device: torch.device) -> nn.Module:
        return load_model(self.base, device=device)

    def restore(self, folder: Path, device: torch.device) -> nn.Module:
        if self.peft:
            return super().restore(folder, device)
        return self.prepare(self.method.apply(load_model(folder, device=device), self.tokenizer))

    def prepare(self, model: nn.Module) -> nn.Module:
        self.block = self.max_len or model.config.block_size
        if self.block > model.config.block_size:
            raise LmstackError(f"max_len {self.block} exceeds the model's context of {model.config.block_size} tokens")
        if not self.data_stats:
            train, val = self.pairs, self.val_pairs
            if not val:
                train, val = hold_out(train, self.val_fraction, self.seed, "pair")
            train_ex, truncated = encode_pairs(self.tokenizer, train, *self.lengths())
            val_ex, _ = encode_pairs(self.tokenizer, val, *self.lengths())
            self.data["train"], self.data["val"] = self.batches(train_ex, self.pad_id), self.batches(val_ex,
                                                                                                     self.pad_id)
            self.data_stats = {"examples": len(train_ex), "val_examples": len(val_ex), "truncated": truncated}
        return model

    def lengths(self) -> tuple[int, int]:
        """The most input and output tokens: the encoder's and decoder's context each."""
        return self.block, self.block

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        return teacher_forced_loss(model, batch, self.pad_id)

    def count(self, batch: tuple[torch.Tensor, ...]) -> int:
        return tokens_read(batch)


class PairFinetune(Seq2SeqFinetune):
    """The same pairs on a decoder: one row of input + output, the loss on the output; a prefix LM reads the
    input bidirectionally (``prefix_len``), a causal decoder causally."""

    batches = DecoderPairBatches

    def prepare(self, model: nn.Module) -> nn.Module:
        self.prefix = bool(getattr(model, "bidirectional_prefix", False))
        return super().prepare(model)

    def lengths(self) -> tuple[int, int]:
        half = self.block // 2  # input and output share one context
        return half, self.block - half

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        x, y, p = batch
        logits = model(x, prefix_len=p) if self.prefix else model(x)
        return causal_lm_loss(logits, y), {}

    def count(self, batch: tuple[torch.Tensor, ...]) -> int:
        return batch[0].numel()
