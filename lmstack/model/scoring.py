"""Scoring continuations under a causal LM: log p(continuation | context), per token and per sequence.

    logp = token_logprobs(model, contexts, continuations)          # [len(c)] per row: log p(c_t | x, c_<t)
    total = sequence_logprobs(model, contexts, continuations)       # [N]: sum_t log p(c_t | x, c_<t)
    mean = sequence_logprobs(..., normalize=True)                   # [N]: the sum / len(c)

Each row is read once as ``context + continuation[:-1]``: the logits at the last context token and at
each continuation token but the last predict the continuation (teacher forcing). Rows of different lengths
are batched with right padding (a causal model never attends forward, so trailing padding changes nothing)
or left padding (``positions`` and a key mask hide it, for models that take them). The functions are
differentiable (reward models, DPO's log-ratios, Rafailov et al. 2023); evaluation wraps them in
``torch.no_grad()``. Used by perplexity (sliding windows), multiple-choice log-likelihood and eval harnesses.

Encoder pair scores (a cross-encoder's relevance, a choice head's option scores) come from a head over
``[CLS] a [SEP] b``, not from token likelihoods; they stay with their heads (``retrieval.cross_encoder``,
``model.heads``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.errors import LmstackError


def token_logprobs(model: nn.Module, contexts: list[list[int]], continuations: list[list[int]],
                   padding: Literal["right", "left"] = "right", batch_size: int = 32) -> list[torch.Tensor]:
    """log p(c_t | context, c_<t) for every token of each continuation: one fp32 tensor [len(c)] per row.

    ``model(idx)`` gives logits [B, T, V] (with ``padding="left"``: ``model(idx, None, positions, key_mask)``);
    every context and continuation needs at least one token, and a row at most the model's context + 1.
    """
    if len(contexts) != len(continuations):
        raise LmstackError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    if not all(contexts) or not all(continuations):
        raise LmstackError("every context and continuation needs at least one token")
    out: list[torch.Tensor] = []
    for lo in range(0, len(contexts), batch_size):
        out += _batch(model, contexts[lo:lo + batch_size], continuations[lo:lo + batch_size], padding)
    return out


def sequence_logprobs(model: nn.Module, contexts: list[list[int]], continuations: list[list[int]],
                      normalize: bool = False, padding: Literal["right", "left"] = "right",
                      batch_size: int = 32) -> torch.Tensor:
    """[N]: log p(continuation | context) of each row, sum_t log p(c_t | ...), or with ``normalize`` its mean
    per continuation token (the length-normalised score of Brown et al. 2020's multiple-choice evaluations)."""
    rows = token_logprobs(model, contexts, continuations, padding, batch_size)
    return torch.stack([r.mean() if normalize else r.sum() for r in rows])


def scored_tokens(contexts: list[list[int]], continuations: list[list[int]]) -> torch.Tensor:
    """[B, T] bool: the real (not padding) tokens of the right-padded batch one ``token_logprobs`` call reads
    (row i: contexts[i] + continuations[i][:-1]); what a mixture of experts' routing losses count."""
    lengths = torch.tensor([len(c) + len(x) - 1 for c, x in zip(contexts, continuations)])
    return torch.arange(int(lengths.max())) < lengths[:, None]


def _batch(model: nn.Module, contexts: list[list[int]], continuations: list[list[int]],
           padding: str) -> list[torch.Tensor]:
    own = getattr(model, "continuation_logits", None)  # a model that conditions otherwise (an encoder-decoder)
    if callable(own):
        return [-F.cross_entropy(z.float(), torch.tensor(x, device=z.device), reduction="none")
                for z, x in zip(own(contexts, continuations), continuations)]
    inputs = [c + x[:-1] for c, x in zip(contexts, continuations)]
    T = max(map(len, inputs))
    pad = [T - len(i) if padding == "left" else 0 for i in inputs]
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    idx = torch.zeros(len(inputs), T, dtype=torch.long)
    for row, (i, p) in enumerate(zip(inputs, pad)):
        idx[row, p:p + len(i)] = torch.tensor(i)
    idx = idx.to(device)
    if any(pad):
        shift = torch.tensor(pad, device=device)[:, None]
        positions = (torch.arange(T, device=device) - shift).clamp(min=0)
        logits = model(idx, None, positions, torch.arange(T, device=device) >= shift)
    else:
        logits = model(idx)
    out = []
    for row, (c, x, p) in enumerate(zip(contexts, continuations, pad)):
        start = p + len(c) - 1  # the logits after the last context token predict x[0]
        z = logits[row, start:start + len(x)].float()
        out.append(-F.cross_entropy(z, torch.tensor(x, device=device), reduction="none"))
    return out
