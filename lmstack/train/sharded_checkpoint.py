"""Sharded checkpoints of multi-process runs (``parallel: ddp | fsdp``) with ``torch.distributed.checkpoint``.

    checkpoint/dcp/              model + optimizer state, each rank writing its own shards (DCP's files)
    checkpoint/trainer_state.pt  every rank's torch (and CUDA) RNG state, the data generator, the objective's position
    checkpoint/trainer_state.json  iteration, tokens, config, world size, every parameter's name and shape,
                                 the model's ``ModelConfig`` (for ``lmstack export``)
    checkpoint/tokenizer/        the run's tokenizer, when the objective has one

State dicts come from ``torch.distributed.checkpoint.state_dict.get_state_dict`` (names as in the plain model,
whatever the wrapping), so DCP reshards on load: a run saved by W processes resumes under any W' (one process
included: DCP then reads without a process group). Atomic: rank 0 opens the temp folder (``io.atomic_dir``) and
broadcasts its name, every rank writes its shards there, rank 0 writes the state files and swaps the folder in
only after DCP's save returned on every rank, so a half-written checkpoint is never resumed. The single-process
checkpoint format (``train.checkpoint``) is unchanged.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import _CHECKPOINT_WRAPPED_MODULE
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from lmstack.config import to_dict
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.config import ModelConfig
from lmstack.train.checkpoint import TrainerState
from lmstack.train.distributed import Single


def is_sharded(path: Path) -> bool:
    """Whether ``path`` holds a sharded (DCP) checkpoint."""
    return (Path(path) / "dcp").is_dir() and (Path(path) / "trainer_state.json").is_file()


def param_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Every parameter's name (as in the plain model: activation checkpointing's wrapper left out) and global
    shape (a sharded DTensor reports the whole tensor's)."""
    return {name.replace(f"{_CHECKPOINT_WRAPPED_MODULE}.", ""): list(p.shape) for name, p in model.named_parameters()}


def save_sharded(path: Path, parallel: Single, model: nn.Module, optimizer: torch.optim.Optimizer,
                 state: TrainerState, data_rng: torch.Generator, config=None, data_state: dict | None = None,
                 tokenizer=None) -> None:
    """Write the checkpoint at ``path`` from every rank (a collective: all ranks call it)."""
    main = parallel.is_main()
    with atomic_dir(path) if main else contextlib.nullcontext() as tmp:
        tmp = Path(parallel.broadcast(str(tmp) if main else None))
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=tmp / "dcp")
        rngs = parallel.gather({"torch": torch.get_rng_state(),
                                "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None})
        if main:
            torch.save({"torch_rngs": [r["torch"] for r in rngs],
                        "cuda_rngs": [r["cuda"] for r in rngs if r["cuda"] is not None],
                        "data_rng": data_rng.get_state(), "data_state": data_state or {}}, tmp / "trainer_state.pt")
            model_config = getattr(model, "config", None)
            write_json(tmp / "trainer_state.json", {
                **state.__dict__, "config": to_dict(config) if config else None,
                "sharded": {"world_size": parallel.world_size, "params": param_shapes(model),
                            "model_config": to_dict(model_config) if isinstance(model_config, ModelConfig)
                            else None}})
            if tokenizer is not None:
                tokenizer.save(tmp / "tokenizer")
    parallel.barrier()  # no rank goes on (to the next save) before the folder is swapped in


def check_model(path: Path, model: nn.Module) -> dict:
    """The checkpoint's metadata, once its parameters are those of ``model`` (one line naming the first that
    differs otherwise: a checkpoint of another model or config)."""
    meta = read_json(Path(path) / "trainer_state.json")
    saved, here = meta.get("sharded", {}).get("params", {}), param_shapes(model)
    for name in sorted(set(saved) | set(here)):
        if saved.get(name) != here.get(name):
            has = f"shape {saved[name]}" if name in saved else "no such parameter"
            asks = f"shape {here[name]}" if name in here else "no such parameter"
            raise LmstackError(f"{path}: checkpoint of another model: parameter {name} has {has} there, the config "
                               f"asks for {asks}; resume with the checkpoint's config")
    return meta


def load_sharded(path: Path, parallel: Single, model: nn.Module, optimizer: torch.optim.Optimizer,
                 data_rng: torch.Generator) -> tuple[TrainerState, dict]:
    """Load model and optimizer state (resharded to this world size), RNGs and counters into the built (and
    wrapped) ``model`` and its ``optimizer``; returns the state and the objective's data state."""
    path = Path(path)
    meta = check_model(path, model)
    try:
        saved = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: name it, never unpickle arbitrary objects
        raise LmstackError(f"{path / 'trainer_state.pt'}: unreadable ({str(e).splitlines()[0]})") from e
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=path / "dcp", no_dist=not parallel.sharded)  # one process: no group to ask
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    rngs, rank = saved["torch_rngs"], parallel.rank
    torch.set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])  # another world size: rank 0's dropout stream
    if saved["cuda_rngs"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["cuda_rngs"][rank % len(saved["cuda_rngs"])])
    data_rng.set_state(saved["data_rng"])
    return TrainerState(meta["iter"], meta["tokens"], meta.get("best_val_loss")), saved.get("data_state", {})
