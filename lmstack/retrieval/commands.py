"""The retriever-training commands, ``lmstack train-dense`` and ``lmstack train-rerank``: read (query, positive,
negatives) examples, optionally mine more negatives from an index, and train a dual encoder or a cross-encoder.
"""

from __future__ import annotations

from pathlib import Path

from lmstack.retrieval.dense_training import train_dual_encoder
from lmstack.retrieval.dual_encoder import Pooling
from lmstack.retrieval.negatives import mine_negatives
from lmstack.retrieval.pairs import PairExample, read_pair_examples
from lmstack.retrieval.rerank_training import train_cross_encoder


def training_pairs(data: Path, negatives_from: Path | None, mined: int) -> list[PairExample]:
    """The examples of ``data``, with ``mined`` more negatives per query from the index ``negatives_from``."""
    examples = read_pair_examples(data)
    return examples if negatives_from is None else mine_negatives(examples, negatives_from, mined)


def train_dense(data: Path, out: Path = Path("runs/dense"), encoder: str = "bert-tiny", tokenizer: Path | None = None,
                pooling: Pooling | None = None, epochs: int = 1, batch_size: int = 32, lr: float = 5e-5,
                temperature: float = 0.05, max_len: int = 128, seed: int = 0, device: str = "auto",
                negatives_from: Path | None = None, mined_negatives: int = 3) -> dict:
    """Train a dual encoder (bi-encoder) for dense retrieval with in-batch and hard negatives (InfoNCE).

    Args:
        data: .jsonl file, one {"query", "positive", "negatives"?: [...]} object per line
        out: folder for the trained encoder (a sentence-transformers / BERT folder)
        encoder: model directory to start from (BERT, sentence-transformers, lmstack mlm), or a preset name
        tokenizer: folder with tokenizer.json, for an encoder built fresh from a preset
        pooling: mean or cls; unset keeps a saved encoder's pooling (mean for a fresh one)
        epochs: passes over the data
        batch_size: queries per batch (each sees the batch's other passages as negatives)
        lr: AdamW learning rate
        temperature: softmax temperature of the InfoNCE loss
        max_len: tokens per text, [CLS] and [SEP] included
        seed: shuffling and initialisation seed
        device: where to train: auto (cuda when available), cpu, cuda, ...
        negatives_from: index folder (say BM25 over the passages): its top passages for each query that are
            not the positive become hard negatives
        mined_negatives: hard negatives mined per query
    """
    examples = training_pairs(data, negatives_from, mined_negatives)
    negatives = [negs for _, _, negs in examples] if any(negs for _, _, negs in examples) else None
    return train_dual_encoder([(q, p) for q, p, _ in examples], out, encoder, tokenizer, negatives, pooling, epochs,
                              batch_size, lr, temperature, max_len, seed, device, show_progress=True)


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
    examples = training_pairs(data, negatives_from, mined_negatives)
    return train_cross_encoder(examples, out, encoder, tokenizer, negatives_per_query, epochs, batch_size, lr, max_len,
                               seed, device, show_progress=True)
