"""The prefix-LM objective (Raffel et al. 2020, sec. 3.2.1, the "prefix LM" of the T5 objective table; Tay et al.
2022's S-denoiser): a decoder reads a random prefix of each window bidirectionally and predicts the rest.

Each window of T + 1 tokens w gets a split point p uniform in [1, T - 1]; inputs x = w[:T], targets y = w[1:],
and ``prefix_len`` = p makes attention bidirectional over x[:p]. Positions t < p - 1 would predict a token the
prefix already shows them, so they take no loss:

    L = -1/|S| sum_{t in S} log p(w_{t+1} | w_{<=t}, w_{<p}),   S = {t : p - 1 <= t < T}

The model must read ``prefix_len`` (``--model.family prefix_lm``); it is saved like any decoder, as the family's
directory (``lmstack.model.families.prefix_lm``).
"""

from __future__ import annotations

import torch
from torch import nn

from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.causal import IGNORE, CausalLM, causal_lm_loss


def prefix_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the suffix, L = -1/|S| sum_{t in S} log softmax(logits_t)[y_t], S = {t : y_t != -100}
    (the prefix's targets are -100), in fp32."""
    return causal_lm_loss(logits, targets)


class PrefixBatches:
    """Windows of ``shards`` with a uniform split point per row: (x [B, T], y [B, T] with -100 before p - 1,
    prefix_len [B])."""

    def __init__(self, shards: TokenShards):
        self.shards = shards

    def batch(self, batch_size: int, block: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
        if block < 2:
            raise LmstackError(f"a prefix LM needs block_size >= 2 (a prefix and a suffix), got {block}")
        x, y = self.shards.batch(batch_size, block, rng)
        p = torch.randint(1, block, (batch_size,), generator=rng)  # [B]: prefix lengths in [1, T - 1]
        y = y.masked_fill(torch.arange(block)[None] < (p - 1)[:, None], IGNORE)
        return x, y, p


class PrefixLMObjective(CausalLM):
    """Suffix cross-entropy with a bidirectional prefix on ``PrefixBatches`` of the shards; the decoder of
    ``model_config`` (family ``prefix_lm``) is built, checkpointed and saved as a model directory."""

    def __init__(self, train: TokenShards, val: TokenShards, batch_size: int, block: int, model_config: ModelConfig,
                 tokenizer: Tokenizer):
        super().__init__(PrefixBatches(train), PrefixBatches(val), batch_size, block, model_config, tokenizer)

    def build(self, device: torch.device) -> nn.Module:
        model = super().build(device)
        if not getattr(model, "bidirectional_prefix", False):
            raise LmstackError(f"model.family is '{self.model_config.family}'; the prefix_lm objective trains a "
                               "decoder that reads a bidirectional prefix: use --model.family prefix_lm")
        return model

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        x, y, p = batch
        return prefix_lm_loss(model(x, prefix_len=p), y), {}

    def count(self, batch: tuple[torch.Tensor, ...]) -> int:
        return batch[0].numel()
