"""The fine-tuning objective: next-token cross-entropy on the assistant's tokens of chat-templated conversations.

    L = -1/|A| sum_{t in A} log p(x_{t+1} | x_{<=t}),  A = the positions whose next token the assistant wrote

(``CausalLM``'s loss; the prompt's targets are -100, see ``adapt.data``). The model is the base with the method
applied (``method.apply``), built after the trainer seeded torch so a LoRA's initial weights are the seed's.
A checkpoint holds only the parameters that train (the base stays on disk where it was), or the whole model
for full fine-tuning; the artefact is an adapter directory, or a model directory for full fine-tuning.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lmstack.adapt.data import SFTBatches, encode_all
from lmstack.adapt.methods import Full, base_fingerprint, count_parameters, save_adapter
from lmstack.data.conversations import Format, read_conversations
from lmstack.data.splits import hold_out
from lmstack.errors import LmstackError
from lmstack.model.hf import load_causal_lm, save_model, write_model_files
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objective import Objective
from lmstack.train.objectives.causal import IGNORE, CausalLM


class AdaptedPolicy:
    """The model side of every objective that tunes a base model with an adaptation method (SFT, DPO, PPO, GRPO):
    ``base`` loaded as a causal LM with ``method`` applied; checkpoints hold the trainable parameters (or the whole
    model, for full fine-tuning); the artefact is ``out/adapter`` (peft's layout) or ``out/model``.

    ``prepare(model)`` is called with the built (or restored) model before training: a subclass encodes its data
    there, once the model's context is known. ``tokenizer`` is set by the subclass.
    """

    base: Path
    method: object
    tokenizer: Tokenizer

    def init_policy(self, base: Path, method) -> None:
        self.base, self.method, self.peft = Path(base), method, not isinstance(method, Full)

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def load_base(self, device: torch.device) -> nn.Module:
        """The base model, before the method is applied (the reference model of DPO and PPO)."""
        return load_causal_lm(self.base, device=device)

    def build(self, device: torch.device) -> nn.Module:
        return self.prepare(self.method.apply(self.load_base(device), self.tokenizer))

    def write_state(self, model: nn.Module, folder: Path) -> None:
        if self.peft:
            Objective.write_state(self, model, folder)  # the trainable parameters only
        else:
            write_model_files(model, folder, self.tokenizer)

    def restore(self, folder: Path, device: torch.device) -> nn.Module:
        if self.peft:
            return Objective.restore(self, folder, device)  # the base with the method, then the trained part
        return self.prepare(self.method.apply(load_causal_lm(folder, device=device), self.tokenizer))

    def save(self, model: nn.Module, out: Path) -> Path:
        if self.peft:
            return save_adapter(self.method, model, out / "adapter", base_fingerprint(model), str(self.base),
                                self.tokenizer)
        return save_model(model, out / "model", self.tokenizer)

    def title(self, model: nn.Module) -> str:
        params = count_parameters(model)
        return (f"{type(self.method).__name__.lower()} {self.stage} · {params['trainable_params']:,} of "
                f"{params['total_params']:,} parameters trained")

    stage = "fine-tuning"


class SupervisedFinetune(AdaptedPolicy, CausalLM):
    """Fine-tune the model in ``base`` with ``method`` on ``train`` conversations, validated on ``val``
    (empty: a seeded ``val_fraction`` of ``train``, at least one, is held out); ``max_len``: tokens per example
    (None: the model's context)."""

    def __init__(self, base: Path, method, tokenizer: Tokenizer, train: list[Path], val: list[Path],
                 batch_size: int, max_len: int | None = None, val_fraction: float = 0.05, fmt: Format = "auto",
                 seed: int = 0):
        if tokenizer.pad_id is None and tokenizer.eos_id is None:
            raise LmstackError(f"{base}: the tokenizer has neither a pad nor an eos token to pad batches with")
        super().__init__(None, None, batch_size, 0, tokenizer=tokenizer)
        self.init_policy(base, method)
        self.files, self.max_len, self.val_fraction, self.format, self.seed = (train, val), max_len, val_fraction, \
            fmt, seed
        self.data_stats: dict = {}
        self.reads_prefix = False  # set by prepare for a prefix LM

    def prepare(self, model: nn.Module) -> nn.Module:
        """Cut the conversations to the model's context (once it is known) and make the batches."""
        self.block = self.max_len or model.config.block_size
        if self.block > model.config.block_size:
            raise LmstackError(f"max_len {self.block} exceeds the model's context of {model.config.block_size} tokens")
        if not self.data_stats:
            self.data["train"], self.data["val"], self.data_stats = self._datasets()
        self.reads_prefix = bool(getattr(model, "bidirectional_prefix", False))  # a prefix LM: see forward_options
        return model

    def forward_options(self, targets: torch.Tensor) -> dict:
        """A prefix LM reads each example's first prompt bidirectionally, as it decodes one: ``prefix_len`` =
        the position of the first labelled target + 1 (that position holds the prompt's last token)."""
        if not self.reads_prefix:
            return {}
        labelled = targets != IGNORE
        first = torch.where(labelled.any(dim=1), labelled.int().argmax(dim=1), torch.zeros_like(labelled[:, 0],
                                                                                                  dtype=torch.long))
        return {"prefix_len": first + 1}

    def _datasets(self) -> tuple[SFTBatches, SFTBatches, dict]:
        """Encode the training (and validation) conversations; without validation files, a seeded
        ``val_fraction`` of the training conversations (at least one) is held out."""
        train_files, val_files = self.files
        conversations = [c for path in train_files for c in read_conversations(path, self.format, completions=True)]
        if val_files:
            val = [c for path in val_files for c in read_conversations(path, self.format, completions=True)]
        else:
            conversations, val = hold_out(conversations, self.val_fraction, self.seed, "conversation")
        train_ex, train_stats = encode_all(self.tokenizer, conversations, self.block)
        val_ex, _ = encode_all(self.tokenizer, val, self.block)
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else self.tokenizer.eos_id
        return SFTBatches(train_ex, pad), SFTBatches(val_ex, pad), {"val_examples": len(val_ex), **train_stats}
