"""Training a dual encoder: InfoNCE over in-batch and hard negatives (DPR, Karpukhin et al. 2020).

Every query of a batch is scored against all the batch's passages, positives and hard negatives alike, and
must pick its own positive (``dual_encoder.info_nce``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lmstack.devices import resolve_device
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.retrieval.dual_encoder import Pooling, info_nce
from lmstack.retrieval.starting_points import dense_starting_point
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.epochs import fit


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
    rows = list(zip(pairs, negatives or [[] for _ in pairs]))

    def loss_of(batch: list[tuple[tuple[str, str], list[str]]]) -> torch.Tensor:
        docs = [pos for (_, pos), _ in batch] + [n for _, negs in batch for n in negs]
        return info_nce(model.embed([q for (q, _), _ in batch]), model.embed(docs), temperature)

    run = fit(model.encoder, rows, loss_of, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
              desc="train dense", show_progress=show_progress)
    model.save(out)
    return {"out": str(out), "pairs": len(pairs), "steps": run["steps"], "first_loss": run["first_loss"],
            "last_loss": run["last_loss"], "wall_s": run["seconds"], "params": model.encoder.num_params(),
            "fingerprint": model.fingerprint}
