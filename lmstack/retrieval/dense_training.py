"""Training a dual encoder: InfoNCE over in-batch and hard negatives (DPR, Karpukhin et al. 2020).

Every query of a batch is scored against all the batch's passages, positives and hard negatives alike, and
must pick its own positive (``dual_encoder.info_nce``); the one ``Trainer`` runs the epochs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lmstack.devices import resolve_device
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.retrieval.dual_encoder import DualEncoder, Pooling, info_nce
from lmstack.retrieval.pairs import PairExample
from lmstack.retrieval.starting_points import dense_starting_point
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.epochs import EpochObjective, train_epochs


class InBatchInfoNCE(EpochObjective):
    """For a batch of B examples, the documents are the B positives, then every example's hard negatives;
    query i must pick column i: ``L = -1/B sum_i log softmax_j(q_i . d_j / t)[i]`` (``info_nce``)."""

    def __init__(self, model: DualEncoder, examples: list[PairExample], batch_size: int, seed: int,
                 temperature: float):
        super().__init__(examples, batch_size, seed)
        self.model, self.temperature = model, temperature

    def loss(self, module: nn.Module, batch: list[PairExample]) -> tuple[torch.Tensor, dict]:
        docs = [pos for _, pos, _ in batch] + [n for _, _, negs in batch for n in negs]
        return info_nce(self.model.embed([q for q, _, _ in batch]), self.model.embed(docs), self.temperature), {}


def train_dual_encoder(pairs: list[tuple[str, str]], out: str | Path, encoder: str | Path | ModelConfig,
                       tokenizer: str | Path | Tokenizer | None = None, negatives: list[list[str]] | None = None,
                       pooling: Pooling | None = None, epochs: int = 1, batch_size: int = 32, lr: float = 5e-5,
                       temperature: float = 0.05, max_len: int = 128, seed: int = 0,
                       device: str | torch.device = "cpu", show_progress: bool = False) -> dict:
    """Fine-tune (or train from scratch) a dual encoder on (query, positive passage) pairs; save it to ``out``.

    ``encoder`` is a model directory (a BERT / sentence-transformers folder, or lmstack's MLM output), a
    ``ModelConfig`` or a preset name (both then need ``tokenizer``). ``negatives[i]`` are hard negatives of
    query i; every query sees all the batch's passages, positives and hard negatives alike.
    """
    if negatives is not None and len(negatives) != len(pairs):
        raise LmstackError(f"{len(pairs)} pairs but {len(negatives)} lists of negatives")
    torch.manual_seed(seed)
    model = dense_starting_point(encoder, tokenizer, pooling, max_len)
    model.encoder.to(resolve_device(device))
    examples = [PairExample(q, p, negs) for (q, p), negs in zip(pairs, negatives or [[] for _ in pairs])]
    run = train_epochs(InBatchInfoNCE(model, examples, batch_size, seed, temperature), model.encoder,
                       epochs=epochs, lr=lr, seed=seed, desc="train dense", show_progress=show_progress)
    model.save(out)
    return {"out": str(out), "pairs": len(pairs), "steps": run["steps"], "first_loss": run["first_loss"],
            "last_loss": run["last_loss"], "wall_s": run["seconds"], "params": model.encoder.num_params(),
            "fingerprint": model.fingerprint}
