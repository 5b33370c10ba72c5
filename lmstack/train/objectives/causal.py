"""Next-token prediction (Radford et al. 2018): pretrain a decoder on token shards; SFT reuses the loss.

``Batches`` sources yield (inputs, targets) [B, T]; a target of -100 takes no loss, which is how SFT masks the
prompt (``adapt.data.SFTBatches``) and how MLM keeps only its masked positions (``objectives.mlm``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.errors import LmstackError
from lmstack.io import atomic_dir
from lmstack.model.config import ModelConfig
from lmstack.model.hf import load_model, write_model_files
from lmstack.model.families import build_model
from lmstack.model.moe import auxiliary_losses
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.expert_load import plot_expert_load
from lmstack.train.objective import Objective

IGNORE = -100  # the target of a position that takes no loss


class Batches(Protocol):
    """A source of training examples: ``TokenShards`` (pretraining), ``MaskedBatches`` (MLM) or
    ``adapt.data.SFTBatches`` (fine-tuning)."""

    def batch(self, batch_size: int, block: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [B, T] and targets [B, T] (-100 where no loss is taken)."""


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions M = {t : y_t != -100}:
    L = -1/|M| sum_{t in M} log softmax(logits_t)[y_t], computed in fp32; with ``z_loss`` = c > 0, plus PaLM's
    auxiliary z-loss c * ``log_z_squared`` (Chowdhery et al. 2022, section 5; c = 1e-4 there)."""
    ce = F.cross_entropy(logits.float().flatten(0, -2), targets.reshape(-1), ignore_index=IGNORE)
    return ce + z_loss * log_z_squared(logits, targets) if z_loss else ce


def log_z_squared(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PaLM's z-loss term 1/|M| sum_{t in M} (log Z_t)^2, Z_t = sum_v exp(logits_t,v) the softmax normaliser:
    it pulls log Z towards 0 (a self-normalised softmax), which keeps the logits from drifting and the bf16
    softmax stable. Computed in fp32 over the labelled positions."""
    keep = targets.reshape(-1) != IGNORE
    log_z = logits.float().flatten(0, -2)[keep].logsumexp(-1)
    return (log_z ** 2).mean()


def with_router_losses(model: nn.Module, targets: torch.Tensor, loss: torch.Tensor, metrics: dict
                       ) -> tuple[torch.Tensor, dict]:
    """``loss`` plus, for a mixture of experts in training, its routers' auxiliary term
    (``model.moe.auxiliary_losses``: always, when a coefficient is > 0) over the real tokens, each row up to its
    last labelled position (so right padding, as SFT pads, never counts, and a prompt does); their metrics added."""
    labelled = targets != IGNORE
    aux, router_metrics = auxiliary_losses(model, labelled.flip(-1).cumsum(-1).flip(-1) > 0)
    return (loss if aux is None else loss + aux), {**metrics, **router_metrics}


class CausalLM(Objective):
    """Next-token cross-entropy on ``batch_size`` x ``block`` draws of the train / val sources; a decoder of
    ``model_config`` is built, checkpointed and saved as a Hugging Face model directory (with ``tokenizer``).
    ``z_loss`` > 0 adds PaLM's z-loss (``causal_lm_loss``) and logs ``ce`` and ``log_z_sq`` beside the loss."""

    z_loss: float = 0.0  # the z-loss coefficient c (TrainConfig.z_loss)

    def __init__(self, train: Batches, val: Batches, batch_size: int, block: int,
                 model_config: ModelConfig | None = None, tokenizer: Tokenizer | None = None):
        self.data = {"train": train, "val": val}
        self.batch_size, self.block, self.model_config, self.tokenizer = batch_size, block, model_config, tokenizer

    def batch(self, split: str, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data[split].batch(self.batch_size, self.block, rng)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, y = batch
        logits = model(x, **self.forward_options(y))
        if not self.z_loss:
            return with_router_losses(model, y, causal_lm_loss(logits, y), {})
        ce, log_z_sq = causal_lm_loss(logits, y), log_z_squared(logits, y)
        return with_router_losses(model, y, ce + self.z_loss * log_z_sq,
                                  {"ce": ce.detach(), "log_z_sq": log_z_sq.detach()})

    def count(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()

    def forward_options(self, targets: torch.Tensor) -> dict:
        """Keyword arguments of the model's forward for a batch with ``targets`` (none: plain causal)."""
        return {}

    def build(self, device: torch.device) -> nn.Module:
        return build_model(self.model_config).to(device)

    def write_state(self, model: nn.Module, folder: Path) -> None:
        write_model_files(model, folder, self.tokenizer)  # a checkpoint is a complete model directory

    def restore(self, folder: Path, device: torch.device) -> nn.Module:
        model = self.load(folder, device)
        if self.model_config is not None and model.config != self.model_config:
            raise LmstackError(f"{folder}: checkpoint model {_diff(model.config, self.model_config)}; resume with "
                               "its config")
        return model

    def load(self, folder: Path, device: torch.device) -> nn.Module:
        return load_model(folder, device=device)

    def save(self, model: nn.Module, out: Path) -> Path:
        with atomic_dir(out / "model") as folder:
            self.write_state(model, folder)
        plot_expert_load(model, out / "expert_load.png")  # a mixture of experts only
        return out / "model"

    def title(self, model: nn.Module) -> str:
        return f"{self.model_config.family} · {model.num_params():,} params"


def _diff(a, b) -> str:
    for k, v in a.__dict__.items():
        if b.__dict__[k] != v:
            return f"has {k}={v}, but the config asks for {k}={b.__dict__[k]}"
    return "differs"
