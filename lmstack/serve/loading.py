"""What a model directory says about serving it beyond the weights (``generate.loading`` loads those)."""

from __future__ import annotations

from pathlib import Path

from lmstack.io import read_json


def generation_end_ids(model_dir: str | Path) -> list[int]:
    """The ids ``generation_config.json`` ends a generation at (``eos_token_id``: one id or a list, as Qwen's chat
    models list the turn end beside eos); [] when the file or the field is absent."""
    path = Path(model_dir) / "generation_config.json"
    config = read_json(path) if path.is_file() else {}
    ids = config.get("eos_token_id") if isinstance(config, dict) else None
    ids = [] if ids is None else ids if isinstance(ids, list) else [ids]
    return [int(i) for i in ids if isinstance(i, int) and not isinstance(i, bool)]
