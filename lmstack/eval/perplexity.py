"""``lmstack perplexity`` (alias ``eval``): mean token cross-entropy, perplexity and bits per byte of a model on text.

Perplexity is exp(mean NLL per token), so it depends on the tokenizer; bits per byte divides the total NLL by
the UTF-8 size of the text, ``sum(NLL) / (ln 2 * bytes)``, so models with different tokenizers compare fairly.
Texts longer than the context are scored with overlapping windows: each window re-reads ``block - stride``
tokens of context and scores only its new tokens (the Hugging Face perplexity recipe).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from lmstack.data.prepare import find_files, read_documents
from lmstack.data.shards import TokenShards
from lmstack.text.tokenizer import Tokenizer
from lmstack.errors import LmstackError
from lmstack.model.hf import load_causal_lm
from lmstack.model.scoring import token_logprobs
from lmstack.model.transformer import Transformer


def perplexity(*, model: str, input: list[Path], stride: int | None = None, device: str = "cpu") -> dict:
    """Score a model directory on text files (.txt, or .jsonl with a `text` field).

    Args:
        model: model directory (config.json, model.safetensors, tokenizer.json)
        input: text files or folders to score
        stride: tokens newly scored per window when a document exceeds the context (default: half the context)
        device: torch device
    """
    net = load_causal_lm(model, device=device).eval()
    tokenizer = Tokenizer.load(model)
    nll, tokens, n_bytes = 0.0, 0, 0
    for text in (t for f in find_files([Path(p) for p in input]) for t in read_documents(f)):
        ids = tokenizer.encode(text, bos=tokenizer.bos_id is not None)
        doc_nll, doc_tokens = sequence_nll(net, ids, stride)
        nll, tokens, n_bytes = nll + doc_nll, tokens + doc_tokens, n_bytes + len(text.encode("utf-8"))
    if tokens == 0:
        raise LmstackError(f"{', '.join(map(str, input))}: no tokens to score")
    return scores(nll, tokens, n_bytes)


def scores(nll: float, tokens: int, n_bytes: int) -> dict:
    ce = nll / tokens
    return {"tokens": tokens, "bytes": n_bytes, "cross_entropy": ce, "perplexity": math.exp(ce),
            "bits_per_byte": nll / (math.log(2) * n_bytes)}


@torch.no_grad()
def sequence_nll(model: Transformer, ids: list[int], stride: int | None = None) -> tuple[float, int]:
    """Total NLL (nats) of ``ids[1:]`` given their prefixes, and the number of tokens scored."""
    block = model.config.block_size
    stride = stride or max(1, block // 2)
    if not 0 < stride <= block:
        raise LmstackError(f"stride must be in 1..{block} (the context), got {stride}")
    total, scored, end = 0.0, 0, 1  # tokens before `end` are already scored (the first has no context)
    while end < len(ids):
        new_end = min(end + stride, len(ids))
        begin = max(0, new_end - block - 1)
        (logp,) = token_logprobs(model, [ids[begin:end]], [ids[end:new_end]])  # the window's new tokens
        total -= logp.sum().item()
        scored, end = scored + new_end - end, new_end
    return total, scored


def unigram_baseline(data_dir: Path) -> float:
    """Cross-entropy (nats/token) of the validation split under add-one-smoothed training unigram counts.

    The floor a language model must beat to have learned anything beyond token frequencies.
    """
    train, val = TokenShards(data_dir, "train"), TokenShards(data_dir, "val")
    vocab = train.manifest["vocab_size"]
    counts = np.ones(vocab, dtype=np.float64)
    for chunk in _chunks(train):
        counts += np.bincount(chunk, minlength=vocab)
    logp = np.log(counts / counts.sum())
    return -sum(logp[chunk].sum() for chunk in _chunks(val)) / len(val)


def _chunks(data: TokenShards, size: int = 1 << 22):
    for start in range(0, len(data), size):
        yield data.tokens(start, min(start + size, len(data)))
