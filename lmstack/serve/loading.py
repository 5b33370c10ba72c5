"""The model to serve: loaded from its directory, an adapter applied, laid out for one-token steps."""

from __future__ import annotations

from pathlib import Path

from lmstack.adapt.lora import merge
from lmstack.adapt.methods import load_adapted
from lmstack.generate.layout import decode_layout
from lmstack.io import read_json
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


def generation_end_ids(model_dir: str | Path) -> list[int]:
    """The ids ``generation_config.json`` ends a generation at (``eos_token_id``: one id or a list, as Qwen's chat
    models list the turn end beside eos); [] when the file or the field is absent."""
    path = Path(model_dir) / "generation_config.json"
    config = read_json(path) if path.is_file() else {}
    ids = config.get("eos_token_id") if isinstance(config, dict) else None
    ids = [] if ids is None else ids if isinstance(ids, list) else [ids]
    return [int(i) for i in ids if isinstance(i, int) and not isinstance(i, bool)]
