"""Reranking with a cross-encoder: query and passage read together, ``[CLS] q [SEP] p [SEP]`` -> one score.

Slower than a dual encoder (one forward pass per pair) but more accurate, so it re-scores a first stage's top
candidates (monoBERT, Nogueira & Cho 2019). Trained listwise: each query's positive must win a softmax over
itself and its negatives (mined hard negatives first, then other queries' positives from the batch).
On disk it is a ``BertForSequenceClassification`` folder with one label, which is also what
sentence-transformers' ``CrossEncoder`` reads and writes (ms-marco-MiniLM-L-6-v2 loads here as is).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from lmstack.text.tokenizer import Tokenizer
from lmstack.devices import resolve_device
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.config import ModelConfig
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.heads import EncoderForSequenceClassification
from lmstack.model.families.bert import fingerprint, load_encoder
from lmstack.model.hf import write_model_files
from lmstack.retrieval.dual_encoder import fresh_encoder, read_examples
from lmstack.train.epochs import fit


class CrossEncoder:
    def __init__(self, model: EncoderForSequenceClassification, tokenizer: Tokenizer, max_len: int = 512):
        if model.num_labels != 1:
            raise LmstackError(f"a cross-encoder has one output (a relevance score), this model has {model.num_labels}")
        self.model, self.tokenizer = model, tokenizer
        self.max_len = min(max_len, model.config.block_size)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.model, self.tokenizer, max_len=self.max_len)

    def logits(self, queries: list[str], texts: list[str]) -> torch.Tensor:
        """Relevance logits [N] of (queries[i], texts[i]), differentiable."""
        device = self.model.classifier.weight.device
        batch = encode_pairs(self.tokenizer, queries, texts, max_len=self.max_len)
        return self.model(**{k: v.to(device) for k, v in batch.items()}).squeeze(-1)

    @torch.no_grad()
    def score(self, query: str, texts: list[str], batch_size: int = 32) -> list[float]:
        """One score per text (a logit: higher = more relevant to ``query``)."""
        was_training = self.model.training
        self.model.eval()
        scores = []
        for i in range(0, len(texts), batch_size):
            chunk = texts[i:i + batch_size]
            scores += self.logits([query] * len(chunk), chunk).float().tolist()
        self.model.train(was_training)
        return scores

    def save(self, path: str | Path) -> Path:
        """Write the BERT folder; the pair length it was trained with goes in tokenizer_config.json's
        ``model_max_length`` (where transformers' tokenizer looks too), so scoring cuts pairs the same way."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            write_model_files(self.model, tmp, self.tokenizer)
            write_json(tmp / "tokenizer_config.json",
                       {**read_json(tmp / "tokenizer_config.json"), "model_max_length": self.max_len})
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> CrossEncoder:
        """A one-label ``BertForSequenceClassification`` folder (ours, or sentence-transformers')."""
        model, tokenizer = load_encoder(path, head="classification", device=device)
        if tokenizer is None:
            raise LmstackError(f"{path}: no tokenizer.json beside the cross-encoder")
        config = Path(path) / "tokenizer_config.json"
        max_len = read_json(config).get("model_max_length", 512) if config.is_file() else 512
        return cls(model, tokenizer, int(min(max_len, model.config.block_size)))


def train_cross_encoder(examples: list[tuple[str, str, list[str]]], out: str | Path,
                        encoder: str | Path | ModelConfig, tokenizer: str | Path | Tokenizer | None = None,
                        negatives_per_query: int = 3, epochs: int = 1, batch_size: int = 16, lr: float = 5e-5,
                        max_len: int = 256, seed: int = 0, device: str | torch.device = "cpu",
                        show_progress: bool = False) -> dict:
    """Train a cross-encoder on (query, positive, negatives) and save it to ``out``.

    Each query is scored against its positive and ``negatives_per_query`` negatives (its own first, then
    the positives of other queries in the batch); the loss is the cross-entropy of the positive's softmax.
    ``encoder``: a cross-encoder folder to continue, any BERT directory (a new score head goes on top), a
    ``ModelConfig`` or a preset name (both with ``tokenizer``).
    """
    torch.manual_seed(seed)
    model = _starting_point(encoder, tokenizer, max_len)
    model.model.to(resolve_device(device))

    def loss_of(rows: list[tuple[str, str, list[str]]]) -> torch.Tensor:
        groups = [[pos] + _negatives(k, rows, negatives_per_query) for k, (_, pos, _) in enumerate(rows)]
        queries = [q for (q, _, _), g in zip(rows, groups) for _ in g]
        return _listwise_loss(model.logits(queries, [t for g in groups for t in g]), [len(g) for g in groups])

    run = fit(model.model, examples, loss_of, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
              desc="train rerank", show_progress=show_progress)
    model.save(out)
    return {"out": str(out), "examples": len(examples), "steps": run["steps"], "first_loss": run["first_loss"],
            "last_loss": run["last_loss"], "wall_s": run["seconds"], "params": model.model.num_params(),
            "fingerprint": model.fingerprint}


def _negatives(k: int, rows: list[tuple[str, str, list[str]]], n: int) -> list[str]:
    """Up to ``n`` negatives for row ``k``: its own, then the other rows' positives (not equal to its own)."""
    own = rows[k][2][:n]
    others = [pos for j, (_, pos, _) in enumerate(rows) if j != k and pos != rows[k][1]]
    return own + others[:n - len(own)]


def _listwise_loss(logits: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Mean over groups of -log softmax(group)[0]: the positive comes first in every group."""
    groups = logits.float().split(sizes)
    padded = torch.nn.utils.rnn.pad_sequence(list(groups), batch_first=True, padding_value=-math.inf)
    return F.cross_entropy(padded, torch.zeros(len(sizes), dtype=torch.long, device=logits.device))


def _starting_point(encoder: str | Path | ModelConfig, tokenizer: str | Path | Tokenizer | None,
                    max_len: int) -> CrossEncoder:
    """A cross-encoder folder to continue, or a score head on a fresh encoder or any BERT directory's."""
    fresh = fresh_encoder(encoder, tokenizer)
    path = Path(encoder) if fresh is None else None
    if path is not None and path.is_dir() and \
            (read_json(path / "config.json").get("architectures") or [None])[0] == "BertForSequenceClassification":
        model = CrossEncoder.load(path)
        model.max_len = min(max_len, model.model.config.block_size)
        return model
    body, tok = fresh or load_encoder(path, head=None)
    if tok is None:
        raise LmstackError(f"{path}: no tokenizer.json beside the encoder")
    return CrossEncoder(EncoderForSequenceClassification(body, num_labels=1), tok, max_len)


def train_rerank(data: Path, out: Path = Path("runs/rerank"), encoder: str = "bert-tiny",
                 tokenizer: Path | None = None, negatives_per_query: int = 3, epochs: int = 1, batch_size: int = 16,
                 lr: float = 5e-5, max_len: int = 256, seed: int = 0, device: str = "auto",
                 negatives_from: Path | None = None, mined_negatives: int = 3) -> dict:
    """Train a cross-encoder reranker on (query, positive, negatives) with a listwise softmax loss.

    Args:
        data: .jsonl file, one {"query", "positive", "negatives"?: [...]} object per line
        out: folder for the trained cross-encoder (BertForSequenceClassification, one label)
        encoder: model directory to start from (a cross-encoder, or any BERT / lmstack mlm folder), or a preset
        tokenizer: folder with tokenizer.json, for an encoder built fresh from a preset
        negatives_per_query: negatives scored with each positive (own hard negatives, then in-batch positives)
        epochs: passes over the data
        batch_size: queries per batch
        lr: AdamW learning rate
        max_len: tokens per (query, passage) pair, special tokens included
        seed: shuffling and initialisation seed
        device: where to train: auto (cuda when available), cpu, cuda, ...
        negatives_from: index folder (say BM25 over the passages): its top passages for each query that are
            not the positive become hard negatives
        mined_negatives: hard negatives mined per query
    """
    examples = read_examples(data, negatives_from, mined_negatives)
    return train_cross_encoder(examples, out, encoder, tokenizer, negatives_per_query, epochs, batch_size, lr, max_len,
                               seed, device, show_progress=True)
