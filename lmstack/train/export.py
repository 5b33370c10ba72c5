"""``lmstack export``: a consolidated Hugging Face model directory from a sharded (multi-process) checkpoint.

    OUT/checkpoint (dcp/ shards of W ranks + trainer_state.json) -> one process -> model.safetensors, config.json,
    tokenizer files (loadable by transformers: ``LlamaForCausalLM``, ``GPT2LMHeadModel``, ...)

One process builds the model of the checkpoint's ``ModelConfig`` on the CPU and asks DCP's planner for the model's
tensors only (``torch.distributed.checkpoint.load`` without a process group reads just the requested keys,
resharded into whole tensors): the optimizer moments, twice the model's size, are never read, and no rank of the
training job has to gather the model. PEFT checkpoints are refused: their artefact is the run's ``adapter/``.
"""

from __future__ import annotations

from pathlib import Path

import torch.distributed.checkpoint as dcp

from lmstack.config import build
from lmstack.errors import LmstackError
from lmstack.io import read_json, refuse_existing
from lmstack.model.config import ModelConfig
from lmstack.model.families import build_model
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.sharded_checkpoint import is_sharded, param_shapes


def export(checkpoint: Path, *, out: Path, overwrite: bool = False) -> dict:
    """Write a Hugging Face model directory from a sharded checkpoint (``torchrun ... --parallel ddp|fsdp``).

    Args:
        checkpoint: the run's checkpoint folder (OUT/checkpoint) or the run's folder OUT
        out: the model directory to write (config.json, model.safetensors, tokenizer)
        overwrite: replace ``out`` if it exists (otherwise that is refused)
    """
    checkpoint = Path(checkpoint)
    if not is_sharded(checkpoint) and is_sharded(checkpoint / "checkpoint"):
        checkpoint = checkpoint / "checkpoint"
    if not is_sharded(checkpoint):
        hint = " (a single-process checkpoint is a model directory already)" \
            if (checkpoint / "model.safetensors").is_file() else ""
        raise LmstackError(f"{checkpoint}: no sharded checkpoint (dcp/ and trainer_state.json){hint}")
    refuse_existing(out, overwrite)
    state_json = read_json(checkpoint / "trainer_state.json")
    meta = state_json.get("sharded", {})
    if not meta.get("model_config"):
        raise LmstackError(f"{checkpoint}: the checkpoint names no model config (a task head's run): nothing to export")
    model = build_model(build(ModelConfig, meta["model_config"], source=str(checkpoint / "trainer_state.json")))
    here = param_shapes(model)
    extra = sorted(set(meta["params"]) - set(here))
    if extra:
        raise LmstackError(f"{checkpoint}: holds parameters the base model lacks ({extra[0]}, ...: a PEFT run's); "
                           "its trained artefact is the run's adapter/")
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=checkpoint / "dcp", no_dist=True)  # the model's tensors only, whole
    model.load_state_dict(state["model"])
    model.eval()
    tokenizer = Tokenizer.load(checkpoint / "tokenizer") if (checkpoint / "tokenizer").is_dir() else None
    save_model(model, out, tokenizer)
    return {"checkpoint": str(checkpoint), "out": str(out), "iter": state_json["iter"],
            "params": sum(p.numel() for p in model.parameters()), "world_size": meta.get("world_size")}
