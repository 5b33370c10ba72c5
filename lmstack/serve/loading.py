"""The model to serve: loaded from its directory, an adapter applied, laid out for one-token steps."""

from __future__ import annotations

from pathlib import Path

from lmstack.adapt.lora import merge
from lmstack.adapt.methods import load_adapted
from lmstack.generate.layout import decode_layout
from lmstack.model import Transformer
from lmstack.text.tokenizer import Tokenizer


def load_for_serving(model_dir: str | Path, adapter_dir: str | Path | None = None,
                     device: str = "cpu") -> tuple[Transformer, Tokenizer]:
    """The model (eval mode, laid out for one-token steps) and tokenizer of a model directory, with an adapter
    applied: a LoRA adapter is merged into the weights (the base model's speed), the others stay modules."""
    model, tokenizer = load_adapted(model_dir, adapter_dir, device=device)
    model = merge(model).eval()
    if model.tok_emb.weight.device.type == "cpu":
        decode_layout(model)
    return model, tokenizer
