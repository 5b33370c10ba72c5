"""Task heads on an ``Encoder`` (Devlin et al. 2019, section 4), each the shape of its ``transformers`` twin:

* ``EncoderForMaskedLM``: dense -> act -> LayerNorm -> tied decoder + bias (``BertForMaskedLM``)
* ``EncoderForQuestionAnswering``: start/end logits per token (``BertForQuestionAnswering``)
* ``EncoderForSequenceClassification``: tanh pooler on [CLS] -> classifier (a cross-encoder is num_labels=1)
* ``EncoderForMultipleChoice``: one score per choice, softmaxed over choices by the loss
and ``pool``: one vector per sequence, the [CLS] state or the mean over real tokens (Reimers & Gurevych 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.model.blocks import _ACTIVATIONS, layer_norm
from lmstack.model.encoder import Encoder


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, how: str = "cls") -> torch.Tensor:
    """[B, T, H] -> [B, H]: the first ([CLS]) position, or the mean of the states of real tokens."""
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"pooling must be 'cls' or 'mean', got {how!r}")


class _Head(nn.Module):
    """An encoder plus task layers, initialised as BERT's are: N(0, 0.02), zero biases."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config

    def _init_head(self) -> None:
        for name, module in self.named_children():
            if name != "encoder" and isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class EncoderForMaskedLM(_Head):
    def __init__(self, encoder: Encoder):
        super().__init__(encoder)
        c = encoder.config
        self.transform = nn.Linear(c.n_embd, c.n_embd)
        self.act = _ACTIVATIONS[c.activation]
        self.norm = layer_norm(c.n_embd, c.norm_eps, bias=True)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self._init_head()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the vocabulary at every position [B, T, V]; the decoder is the token embedding."""
        h = self.norm(self.act(self.transform(self.encoder(input_ids, attention_mask, token_type_ids))))
        return F.linear(h, self.encoder.tok_emb.weight, self.bias)


class EncoderForQuestionAnswering(_Head):
    def __init__(self, encoder: Encoder):
        super().__init__(encoder)
        self.qa_outputs = nn.Linear(encoder.config.n_embd, 2)
        self._init_head()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(start_logits, end_logits), each [B, T]: where the answer span begins and ends."""
        start, end = self.qa_outputs(self.encoder(input_ids, attention_mask, token_type_ids)).unbind(dim=-1)
        return start.contiguous(), end.contiguous()


class EncoderForSequenceClassification(_Head):
    def __init__(self, encoder: Encoder, num_labels: int):
        super().__init__(encoder)
        self.num_labels = num_labels
        self.pooler = nn.Linear(encoder.config.n_embd, encoder.config.n_embd)
        self.drop = nn.Dropout(encoder.config.dropout)
        self.classifier = nn.Linear(encoder.config.n_embd, num_labels)
        self._init_head()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, num_labels] from BERT's pooled output, tanh(W h_[CLS] + b)."""
        h = self.encoder(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.drop(torch.tanh(self.pooler(h[:, 0]))))


class EncoderForMultipleChoice(EncoderForSequenceClassification):
    def __init__(self, encoder: Encoder):
        super().__init__(encoder, num_labels=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Inputs [B, C, T] (C choices, each question + answer) -> scores [B, C]."""
        B, C, T = input_ids.shape
        flat = [t.reshape(B * C, T) if t is not None else None for t in (input_ids, attention_mask, token_type_ids)]
        return super().forward(*flat).view(B, C)
