"""The extractive reader's training objective: cross-entropy on the answer's start and end tokens.

BERT's SQuAD fine-tuning (Devlin et al. 2019, section 4.2): the span head gives every token a start and an end
logit; with gold positions s, e of a window (0, the [CLS] token, where the window holds no answer)

    L = ( CE(softmax(start_logits), s) + CE(softmax(end_logits), e) ) / 2

with padded positions masked out of both softmaxes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.qa.features import Feature, collate
from lmstack.train.objectives.epochs import EpochObjective


class SpanStartEndCE(EpochObjective):
    """Seeded epochs over training windows (``features.make_features(..., train=True)``), padded with ``pad_id``."""

    def __init__(self, features: list[Feature], batch_size: int, seed: int, pad_id: int):
        super().__init__(features, batch_size, seed)
        self.pad_id = pad_id

    def batch(self, split: str, rng: torch.Generator) -> dict[str, torch.Tensor]:
        return collate(super().batch(split, rng), self.pad_id)

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return len(batch["input_ids"])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        start, end = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        pad = batch["attention_mask"] == 0
        return (F.cross_entropy(start.masked_fill(pad, -1e4), batch["start_positions"])
                + F.cross_entropy(end.masked_fill(pad, -1e4), batch["end_positions"])) / 2, {}
