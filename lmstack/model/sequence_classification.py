"""A decoder with a score head: ``num_labels`` scores per sequence from the final hidden state of its last real
token, the shape of Hugging Face's ``LlamaForSequenceClassification`` / ``Qwen2ForSequenceClassification`` /
``GPT2ForSequenceClassification`` (with ``num_labels=1``, a reward model, Ouyang et al. 2022).

    h = body.hidden_states(tokens)            # [B, T, d], after the final norm
    i_b = max{t : x_{b,t} != pad_token_id}    # the rightmost non-pad token, as transformers pools
    scores_b = W h_{b, i_b},  W: [num_labels, d], no bias

With no ``pad_token_id`` the last position is taken (transformers then refuses batches). The body keeps its
family's tensor names (``model.*`` / ``transformer.*``) and loses its LM head; ``score.weight`` is the head. The
registered ``Head`` (``SEQUENCE_CLASSIFICATION``) lets ``model.hf`` save and load it for every decoder family.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.registry import Head, Rule, register_head
from lmstack.model.transformer import Transformer


def last_token_index(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """[B]: the rightmost position whose token is not ``pad_token_id`` (0 for an all-pad row; the last position
    for every row when there is no pad id), transformers' rule for left and right padding alike."""
    B, T = input_ids.shape
    if pad_token_id is None:
        return torch.full((B,), T - 1, dtype=torch.long, device=input_ids.device)
    positions = torch.arange(T, device=input_ids.device)
    return (positions * (input_ids != pad_token_id)).argmax(dim=-1)


class DecoderForSequenceClassification(nn.Module):
    """``num_labels`` scores per sequence from a decoder ``backbone`` (its LM head is removed). The score layer
    starts N(0, 1/(d+1)) as trl's and OpenAI's reward heads (Stiennon et al. 2020)."""

    def __init__(self, backbone: Transformer, num_labels: int = 1, pad_token_id: int | None = None):
        super().__init__()
        if num_labels < 1:
            raise LmstackError(f"num_labels must be at least 1, got {num_labels}")
        backbone.lm_head = None  # the body's next-token head is not part of a score model
        self.backbone, self.config = backbone, backbone.config
        self.num_labels, self.pad_token_id = num_labels, pad_token_id
        self.score = nn.Linear(backbone.config.n_embd, num_labels, bias=False)
        nn.init.normal_(self.score.weight, std=1 / math.sqrt(backbone.config.n_embd + 1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores [B, num_labels] of right-padded ``input_ids`` [B, T]; ``attention_mask`` (1 = real token), where
        given, also hides padding keys."""
        h = self.backbone.hidden_states(self.backbone.tok_emb(input_ids), key_mask=attention_mask)
        last = last_token_index(input_ids, self.pad_token_id)
        return self.score(h[torch.arange(h.size(0), device=h.device), last])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _hf_config(model: DecoderForSequenceClassification) -> dict:
    return {"num_labels": model.num_labels, "pad_token_id": model.pad_token_id,
            "id2label": {str(i): f"LABEL_{i}" for i in range(model.num_labels)},
            "label2id": {f"LABEL_{i}": i for i in range(model.num_labels)}}


def _wrap(body: nn.Module, hf: dict) -> DecoderForSequenceClassification:
    return DecoderForSequenceClassification(body, len(hf.get("id2label") or {}) or hf.get("num_labels", 2),
                                            hf.get("pad_token_id"))


SEQUENCE_CLASSIFICATION = register_head(Head(
    name="sequence-classification", hf_suffix="ForSequenceClassification", wrap=_wrap, hf_config=_hf_config,
    rules=lambda model: [Rule("score.weight", ("score.weight",))], body="backbone"))
DecoderForSequenceClassification.hf_head = SEQUENCE_CLASSIFICATION
