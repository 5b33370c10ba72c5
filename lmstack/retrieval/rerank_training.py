"""Training a cross-encoder reranker listwise: each query's positive must win a softmax over itself and its
negatives, its own hard negatives first, then other queries' positives from the batch
(``cross_encoder.listwise_loss``); the one ``Trainer`` runs the epochs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lmstack.devices import resolve_device
from lmstack.model.config import ModelConfig
from lmstack.retrieval.cross_encoder import CrossEncoder, listwise_loss
from lmstack.retrieval.pairs import PairExample
from lmstack.retrieval.starting_points import rerank_starting_point
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.epochs import EpochObjective, train_epochs


def in_batch_negatives(k: int, rows: list[PairExample], n: int) -> list[str]:
    """Up to ``n`` negatives for row ``k``: its own, then the other rows' positives (not equal to its own)."""
    own = rows[k][2][:n]
    others = [pos for j, (_, pos, _) in enumerate(rows) if j != k and pos != rows[k][1]]
    return own + others[:n - len(own)]


class ListwiseRerank(EpochObjective):
    """Each query of a batch is scored with its positive first, then ``negatives_per_query`` negatives
    (``in_batch_negatives``); ``L = -1/B sum_i log softmax(s_i)[0]`` over each query's group (``listwise_loss``)."""

    def __init__(self, model: CrossEncoder, examples: list[PairExample], batch_size: int, seed: int,
                 negatives_per_query: int):
        super().__init__(examples, batch_size, seed)
        self.model, self.negatives_per_query = model, negatives_per_query

    def loss(self, module: nn.Module, batch: list[PairExample]) -> tuple[torch.Tensor, dict]:
        n = self.negatives_per_query
        groups = [[pos] + in_batch_negatives(k, batch, n) for k, (_, pos, _) in enumerate(batch)]
        queries = [q for (q, _, _), g in zip(batch, groups) for _ in g]
        logits = self.model.logits(queries, [t for g in groups for t in g])
        return listwise_loss(logits, [len(g) for g in groups]), {}


def train_cross_encoder(examples: list[PairExample], out: str | Path, encoder: str | Path | ModelConfig,
                        tokenizer: str | Path | Tokenizer | None = None, negatives_per_query: int = 3,
                        epochs: int = 1, batch_size: int = 16, lr: float = 5e-5, max_len: int = 256, seed: int = 0,
                        device: str | torch.device = "cpu", show_progress: bool = False) -> dict:
    """Train a cross-encoder on (query, positive, negatives) and save it to ``out``.

    Each query is scored against its positive and ``negatives_per_query`` negatives (its own first, then
    the positives of other queries in the batch); the loss is the cross-entropy of the positive's softmax.
    ``encoder``: a cross-encoder folder to continue, any BERT directory (a new score head goes on top), a
    ``ModelConfig`` or a preset name (both with ``tokenizer``).
    """
    torch.manual_seed(seed)
    model = rerank_starting_point(encoder, tokenizer, max_len)
    model.model.to(resolve_device(device))
    objective = ListwiseRerank(model, examples, batch_size, seed, negatives_per_query)
    run = train_epochs(objective, model.model, epochs=epochs, lr=lr, seed=seed, desc="train rerank",
                       show_progress=show_progress)
    model.save(out)
    return {"out": str(out), "examples": len(examples), "steps": run["steps"], "first_loss": run["first_loss"],
            "last_loss": run["last_loss"], "wall_s": run["seconds"], "params": model.model.num_params(),
            "fingerprint": model.fingerprint}
