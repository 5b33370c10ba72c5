"""The masked-language-model objective (Devlin et al. 2019): pretrain an encoder by filling in hidden tokens.

Each batch is random windows of the token shards (the same draw as causal pretraining) in which 15% of the
tokens are chosen as targets: 80% of those are replaced by the mask token, 10% by a random token and 10% kept.
Labels are -100 everywhere else, so ``causal_lm_loss`` (cross-entropy, ignoring -100) is the MLM loss as is:
``MaskedLM`` is ``CausalLM`` with another model and other batches. All randomness comes from the trainer's
``torch.Generator``, so a resumed run draws the same masks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.model.families.bert import build_encoder
from lmstack.model.encoder_text import specials
from lmstack.model.heads import EncoderForMaskedLM
from lmstack.model.families.bert import load_encoder
from lmstack.model.hf import save_model, write_model_files
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.causal import IGNORE, CausalLM


def build_mlm_model(config: ModelConfig) -> EncoderForMaskedLM:
    """A BERT encoder with its masked-LM head; ``forward(idx)`` gives logits [B, T, V] (no padding needed)."""
    if config.family != "bert":
        raise LmstackError(f"model.family is '{config.family}'; the mlm objective trains an encoder: use "
                           "--model.family bert (or the bert-tiny preset's shape)")
    return EncoderForMaskedLM(build_encoder(config))


def save_mlm_model(model: EncoderForMaskedLM, directory: str | Path, tokenizer: Tokenizer) -> Path:
    """Write the model as a ``BertForMaskedLM`` folder (loads in ``transformers`` and in ``load_encoder``)."""
    return save_model(model, directory, tokenizer)


class MaskedBatches:
    """Masked windows of ``shards``: ``batch`` has ``TokenShards.batch``'s signature, so the trainer's loop
    draws MLM batches exactly as it draws next-token ones."""

    def __init__(self, shards: TokenShards, tokenizer: Tokenizer, mask_prob: float = 0.15):
        s = specials(tokenizer)
        if s.mask_id is None:
            raise LmstackError(f"{shards.directory}: the tokenizer has no [MASK] or <|mask|> token; run lmstack "
                               "prepare again to train one with lmstack's special tokens")
        self.shards, self.mask_id, self.mask_prob = shards, s.mask_id, mask_prob
        self.vocab_size = tokenizer.vocab_size
        added = tokenizer.backend.get_added_tokens_decoder()
        self.special_ids = torch.tensor(sorted(i for i, t in added.items() if t.special))

    def batch(self, batch_size: int, block_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels), each [batch_size, block_size] int64."""
        x, _ = self.shards.batch(batch_size, block_size, generator)
        return mask_tokens(x, self.mask_id, self.vocab_size, self.special_ids, generator, self.mask_prob)


def mask_tokens(x: torch.Tensor, mask_id: int, vocab_size: int, special_ids: torch.Tensor,
                generator: torch.Generator, prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 corruption of ``prob`` of the non-special tokens; at least one target per batch."""
    can = ~torch.isin(x, special_ids)
    chosen = (torch.rand(x.shape, generator=generator) < prob) & can
    if not chosen.any() and can.any():  # an all-ignored batch would make the loss NaN
        first = can.flatten().nonzero()[torch.randint(int(can.sum()), (1,), generator=generator)]
        chosen.view(-1)[first] = True
    labels = torch.where(chosen, x, IGNORE)
    r = torch.rand(x.shape, generator=generator)
    random_tokens = torch.randint(vocab_size, x.shape, generator=generator)
    inputs = torch.where(chosen & (r < 0.8), mask_id, x)
    inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_tokens, inputs)
    return inputs, labels


class MaskedLM(CausalLM):
    """Cross-entropy on the masked tokens of ``MaskedBatches`` of the shards; a BERT encoder with its MLM head
    is built, checkpointed and saved as a ``BertForMaskedLM`` directory."""

    def __init__(self, train: TokenShards, val: TokenShards, batch_size: int, block: int, model_config: ModelConfig,
                 tokenizer: Tokenizer):
        super().__init__(MaskedBatches(train, tokenizer), MaskedBatches(val, tokenizer), batch_size, block,
                         model_config, tokenizer)

    def build(self, device: torch.device) -> nn.Module:
        return build_mlm_model(self.model_config).to(device)

    def write_state(self, model: nn.Module, folder: Path) -> None:
        write_model_files(model, folder, self.tokenizer)

    def load(self, folder: Path, device: torch.device) -> nn.Module:
        return load_encoder(folder, head="mlm", device=device)[0]
