"""One record per finished training run: N, D, C, final validation loss, tokenizer fingerprint.

N is counted two ways: ``params`` (every parameter, a tied embedding once: Hoffmann et al. 2022, the default
of ``lmstack scaling fit``) and ``params_non_embedding`` (token and position embeddings, and an untied LM head,
left out: Kaplan et al. 2020). D is the tokens the trainer consumed (its checkpoint's count). C = 6 N D
(``flops``); ``flops_attention`` adds the attention term, D x 12 L H Q T (PaLM, Chowdhery et al. 2022, app. B).
The validation loss is the mean next-token cross-entropy over *every* target of the data's val split (ordered
windows of the run's block size), not the trainer's sampled estimate, so it is exact and identical across runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.io import atomic_open, read_json, read_jsonl, write_json
from lmstack.model.hf import load_model

FIELDS = ("name", "params", "params_non_embedding", "tokens", "flops", "flops_attention", "val_loss",
          "tokenizer_sha256", "n_layer", "n_embd", "iters")
PARAM_COUNTS = {"total": "params", "non_embedding": "params_non_embedding"}  # fit --params -> record field
EVAL_FILE = "scaling_eval.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def param_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of a decoder ``Transformer``."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied matrix once
    embedding = model.tok_emb.weight.numel()
    if model.pos_emb is not None:
        embedding += model.pos_emb.weight.numel()
    if model.lm_head is not None and model.lm_head.weight is not model.tok_emb.weight:
        embedding += model.lm_head.weight.numel()
    return total, total - embedding


@torch.no_grad()
def validation_loss(model: torch.nn.Module, data: Path, block_size: int, batch_size: int = 16) -> float:
    """Mean cross-entropy (nats per token) over every target of ``data``'s val split."""
    model.eval()
    total, count = 0.0, 0
    for x, y in TokenShards(data, "val").iter_windows(block_size, batch_size):
        logits = model(x).float()
        total += F.cross_entropy(logits.flatten(0, -2), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return total / count


def collect(run: Path, data: Path | None = None) -> dict:
    """The record of the finished run in ``run`` (train_config.json, checkpoint/, model/); the exact validation
    loss is computed once (on ``data``, else the run's own data folder) and kept in ``run``/scaling_eval.json."""
    run = Path(run)
    cfg = read_json(run / "train_config.json")
    state = read_json(run / "checkpoint" / "trainer_state.json")
    if state["iter"] < cfg["max_iters"] or not (run / "model" / "config.json").is_file():
        raise LmstackError(f"{run}: the run is not finished ({state['iter']} of {cfg['max_iters']} steps); "
                           "run the sweep again to complete it")
    model = load_model(run / "model")
    total, non_embedding = param_counts(model)
    data = Path(data or cfg["data"])
    evaluated = read_json(run / EVAL_FILE) if (run / EVAL_FILE).is_file() else {}
    if evaluated.get("data") != str(data):
        evaluated = {"data": str(data), "val_loss": validation_loss(model, data, model.config.block_size)}
        write_json(run / EVAL_FILE, evaluated)
    c, tokens = model.config, int(state["tokens"])
    attention = 12 * c.n_layer * c.n_head * c.head_dim * c.block_size
    return {"name": run.name, "params": total, "params_non_embedding": non_embedding, "tokens": tokens,
            "flops": 6.0 * total * tokens, "flops_attention": (6.0 * total + attention) * tokens,
            "val_loss": evaluated["val_loss"], "tokenizer_sha256": sha256_file(run / "model" / "tokenizer.json"),
            "n_layer": c.n_layer, "n_embd": c.n_embd, "iters": int(state["iter"])}


def write_runs(path: Path, records: Iterable[dict]) -> None:
    with atomic_open(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_runs(path: Path) -> list[dict]:
    """Records from a runs.jsonl (``lmstack scaling sweep``'s, or one written by hand with the same fields:
    name, params and/or params_non_embedding, tokens, val_loss, tokenizer_sha256; flops defaults to 6 N D)."""
    records = []
    for where, record in read_jsonl(path):
        if not isinstance(record, dict):
            raise LmstackError(f"{where}: expected a JSON object per line")
        for key in ("tokens", "val_loss"):
            if key not in record:
                raise LmstackError(f"{where}: missing field '{key}'")
        if "params" not in record and "params_non_embedding" not in record:
            raise LmstackError(f"{where}: missing field 'params' (or 'params_non_embedding')")
        for key in ("params", "params_non_embedding", "tokens", "flops", "val_loss"):
            value = record.get(key)
            if key in record and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
                raise LmstackError(f"{where}: {key} is {value!r}; expected a finite number > 0")
        record.setdefault("name", where)
        if "params" in record:
            record.setdefault("flops", 6.0 * record["params"] * record["tokens"])
        record["where"] = where
        records.append(record)
    if not records:
        raise LmstackError(f"{path}: holds no runs")
    return records


def check_one_tokenizer(records: list[dict]) -> str | None:
    """Refuse runs from different tokenizers (their losses are in different units: nats per *different*
    tokens); returns the one fingerprint (None when no record has one)."""
    seen: dict[str, str] = {}
    for r in records:
        sha = r.get("tokenizer_sha256")
        if sha is not None:
            seen.setdefault(sha, r["name"])
    if len(seen) > 1:
        (a, ra), (b, rb) = list(seen.items())[:2]
        raise LmstackError(f"runs from different tokenizers cannot be fitted together: run '{ra}' has tokenizer "
                           f"sha256 {a[:12]}…, run '{rb}' has {b[:12]}…; fit each tokenizer's runs separately")
    return next(iter(seen), None)
