"""Reranking with a cross-encoder: query and passage read together, ``[CLS] q [SEP] p [SEP]`` -> one score.

Slower than a dual encoder (one forward pass per pair) but more accurate, so it re-scores a first stage's top
candidates (monoBERT, Nogueira & Cho 2019). Trained listwise: each query's positive must win a softmax over
itself and its negatives (mined hard negatives first, then other queries' positives from the batch).
On disk it is a ``BertForSequenceClassification`` folder with one label, which is also what
sentence-transformers' ``CrossEncoder`` reads and writes (ms-marco-MiniLM-L-6-v2 loads here as is).
Training is ``retrieval.rerank_training``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.heads import EncoderForSequenceClassification
from lmstack.model.families.bert import fingerprint, load_encoder
from lmstack.model.hf import write_model_files
from lmstack.text.tokenizer import Tokenizer


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


def listwise_loss(logits: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Listwise softmax cross-entropy over groups of consecutive logits, the positive first in each group:

        L = -1/G sum_g log( exp(s_g0) / sum_j exp(s_gj) )

    ``sizes`` are the group lengths (they may differ: shorter groups are padded with -inf)."""
    groups = logits.float().split(sizes)
    padded = torch.nn.utils.rnn.pad_sequence(list(groups), batch_first=True, padding_value=-math.inf)
    return F.cross_entropy(padded, torch.zeros(len(sizes), dtype=torch.long, device=logits.device))
