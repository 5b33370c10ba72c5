"""Multi-process training under ``torchrun``: the process group, the model's wrapping (DDP or FSDP2) and the
rows each rank reads, as one ``Parallel`` object the one ``Trainer`` calls (no second loop).

    torchrun --nproc-per-node N -m lmstack train ... --parallel ddp|fsdp

``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``init`` joins the group (NCCL on
CUDA, gloo on CPU) within ``dist_timeout`` seconds, or raises one line naming the rendezvous. Data: every rank
draws the SAME global micro-batch (``batch_size`` rows) from the shared data generator and keeps rows
``[r B/W, (r+1) B/W)``, so the ranks read distinct rows, a run equals a one-process run of the same global batch,
and resuming (at any world size) is restoring the generator. Gradients: each rank's loss is the mean over its
B/W rows and DDP / FSDP average the gradients over the W ranks, so with equal rows per rank the gradient is that
of the mean over all B rows (for masked losses such as SFT's, the mean of the ranks' means: a token-weighted
mean would need the global count of labelled tokens). Accumulation syncs only on the last micro-batch
(``DistributedDataParallel.no_sync``; FSDP2: ``set_requires_gradient_sync(False)``).

FSDP2 (``torch.distributed.fsdp.fully_shard``, Zhao et al. 2023 "PyTorch FSDP") shards every block, then the
root; ``FSDPConfig`` picks the ``MixedPrecisionPolicy`` (param / reduce dtypes), activation checkpointing of
each block (``checkpoint_wrapper``: recompute in backward, Chen et al. 2016) and ``CPUOffloadPolicy``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (apply_activation_checkpointing,
                                                                         checkpoint_wrapper)
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from lmstack.errors import LmstackError
from lmstack.train.config import FSDPConfig, LoopConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class Launch:
    """What torchrun told this process: its rank among ``world_size``, its GPU index and the rendezvous."""
    rank: int
    world_size: int
    local_rank: int
    endpoint: str  # MASTER_ADDR:MASTER_PORT


def launch_from_env(env: dict[str, str] | None = None) -> Launch | None:
    """The torchrun variables (None when WORLD_SIZE is unset: not launched by torchrun)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return None
    try:
        rank, world, local = int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise LmstackError(f"RANK={env.get('RANK')!r} WORLD_SIZE={env.get('WORLD_SIZE')!r} "
                           f"LOCAL_RANK={env.get('LOCAL_RANK')!r}: torchrun's variables must be integers") from None
    if not 0 <= rank < world:
        raise LmstackError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return Launch(rank, world, local, f"{env.get('MASTER_ADDR', '?')}:{env.get('MASTER_PORT', '?')}")


def init(launch: Launch, device: torch.device, timeout_s: float) -> None:
    """Join the process group (a no-op when joined): NCCL on CUDA, gloo on CPU; one line when the rendezvous
    cannot be reached within ``timeout_s``. Torn down at exit (``teardown``). Ranks other than 0 print nothing
    on stdout (results, progress: rank 0 speaks for the run); their errors still reach stderr."""
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size,
                                timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError, TimeoutError) as e:
        raise LmstackError(f"rank {launch.rank} of {launch.world_size}: no rendezvous with the other processes at "
                           f"{launch.endpoint} within {timeout_s:g} s ({_first_line(e)}); start every process with "
                           "torchrun (--rdzv-endpoint HOST:PORT on every node)") from None
    atexit.register(teardown)
    if launch.rank != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)


def teardown() -> None:
    """Leave the process group (idempotent)."""
    if dist.is_initialized():
        dist.destroy_process_group()


class Single:
    """``parallel: none``: one process; every hook is the identity. The base of the multi-process ones."""

    rank, world_size, sharded = 0, 1, False

    def __init__(self, cfg: LoopConfig):
        self.cfg = cfg
        self.wrapped: nn.Module | None = None

    def is_main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on (``cuda:LOCAL_RANK`` under torchrun)."""
        return device

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the loop calls forward on (the model itself here)."""
        self.wrapped = model
        return model

    def rows(self, batch: Any) -> Any:
        """This rank's rows of a global batch."""
        return batch

    def sync_grads(self, last: bool) -> None:
        """Before a micro-batch's forward: its backward synchronises gradients only when ``last``."""

    def check_plain_resume(self, path) -> None:
        """Whether a single-process checkpoint at ``path`` can be resumed here (it can, but by FSDP)."""

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (the logged loss)."""
        return value

    def any(self, flag: bool) -> bool:
        """Whether any rank raised ``flag`` (a stop signal, a spent time budget): all ranks stop together."""
        return flag

    def barrier(self) -> None:
        """Wait for every rank."""

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        return obj

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        return [obj]

    def full_model(self, model: nn.Module, rebuild: Callable[[], nn.Module]) -> nn.Module | None:
        """The trained model with whole (unsharded) weights on rank 0, for the artefact; None on other ranks."""
        return model

    @contextlib.contextmanager
    def guard(self, where: Callable[[], str]) -> Iterator[None]:
        """Turn a lost peer (a rank died, a collective timed out) into one line naming ``where()``."""
        yield


class DDP(Single):
    """``parallel: ddp``: every rank holds the whole model; ``DistributedDataParallel`` all-reduces gradients
    (Li et al. 2020, "PyTorch Distributed")."""

    def __init__(self, cfg: LoopConfig):
        super().__init__(cfg)
        launch = launch_from_env()
        if launch is None:
            raise LmstackError(f"parallel: {cfg.parallel} needs the processes torchrun starts (WORLD_SIZE is "
                               "unset): run torchrun --nproc-per-node N -m lmstack ..., or --parallel none")
        self.launch, self.rank, self.world_size, self.sharded = launch, launch.rank, launch.world_size, True
        if cfg.batch_size % self.world_size:
            raise LmstackError(f"batch_size {cfg.batch_size} (the global micro-batch) is not divisible by the "
                               f"{self.world_size} processes: choose a multiple of {self.world_size}")

    def device(self, device: torch.device) -> torch.device:
        if device.type == "cuda":
            device = torch.device("cuda", self.launch.local_rank)
            torch.cuda.set_device(device)
        init(self.launch, device, self.cfg.dist_timeout)
        return device

    def wrap(self, model: nn.Module) -> nn.Module:
        device = next(model.parameters()).device
        self.wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        return self.wrapped

    def rows(self, batch: Any) -> Any:
        return take_rows(batch, self.rank, self.world_size)

    def sync_grads(self, last: bool) -> None:
        self.wrapped.require_backward_grad_sync = last  # what DistributedDataParallel.no_sync() toggles

    def mean(self, value: float) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / self.world_size

    def any(self, flag: bool) -> bool:
        t = torch.tensor([int(bool(flag))])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t)

    def barrier(self) -> None:
        dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    @contextlib.contextmanager
    def guard(self, where: Callable[[], str]) -> Iterator[None]:
        try:
            yield
        except (dist.DistError, RuntimeError) as e:
            if isinstance(e, LmstackError) or not (isinstance(e, dist.DistError) or _is_comm_error(e)):
                raise
            raise LmstackError(f"rank {self.rank} of {self.world_size}: lost the other processes {where()} "
                               f"({_first_line(e)}); the last complete checkpoint is kept: continue with "
                               "--resume") from None


class FSDP(DDP):
    """``parallel: fsdp``: FSDP2 shards parameters, gradients and optimizer state over the ranks: each block
    (optionally activation-checkpointed) is one ``fully_shard`` unit, then the root."""

    def wrap(self, model: nn.Module) -> nn.Module:
        opts: FSDPConfig = self.cfg.fsdp
        blocks = find_blocks(model)
        params = sum(p.numel() for p in model.parameters())
        if len(blocks) < self.world_size or params < self.world_size:
            raise LmstackError(f"parallel: fsdp shards over {self.world_size} processes, but the model has "
                               f"{len(blocks)} blocks ({params:,} parameters): use --parallel ddp or fewer "
                               "processes")
        if opts.activation_checkpointing:
            ids = {id(b) for b in blocks}
            apply_activation_checkpointing(model, checkpoint_wrapper_fn=checkpoint_wrapper,
                                           check_fn=lambda m: id(m) in ids)
            blocks = find_blocks(model)
        kwargs = {"mp_policy": MixedPrecisionPolicy(param_dtype=DTYPES[opts.param_dtype],
                                                    reduce_dtype=DTYPES[opts.reduce_dtype])}
        if opts.cpu_offload:
            kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
        for block in blocks:
            fully_shard(block, **kwargs)
        self.wrapped = fully_shard(model, **kwargs)
        # FSDP2 picks its root on the first forward; PPO's rollouts call the policy inside the root (policy +
        # value) before any forward of the root itself, so the root is settled here (torch has no public call).
        self.wrapped._get_fsdp_state()._lazy_init()
        return self.wrapped

    def sync_grads(self, last: bool) -> None:
        self.wrapped.set_requires_gradient_sync(last)

    def check_plain_resume(self, path) -> None:
        raise LmstackError(f"{path}: a single-process checkpoint (its optimizer state is not sharded): resume it "
                           "with --parallel none or ddp, then save a sharded one")

    def full_model(self, model: nn.Module, rebuild: Callable[[], nn.Module]) -> nn.Module | None:
        """Gather the full state dict onto rank 0's CPU (``full_state_dict``, ``cpu_offload``: the other ranks
        hold nothing) and load it into a plain model from ``rebuild()``."""
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.is_main():
            return None
        plain = rebuild().cpu()
        plain.load_state_dict(full)
        return plain


PARALLEL: dict[str, type[Single]] = {"none": Single, "ddp": DDP, "fsdp": FSDP}


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Within, every FSDP2 unit inside ``model`` holds its whole parameters (gathered here, kept across forwards),
    so decoding, which runs under ``torch.inference_mode``, never all-gathers inside it (the gathered tensors
    would be inference tensors, and the next training step's in-place update of them fails): the rollouts of
    PPO / GRPO and held-out answers. Pass the trainer's model (the root) when decoding a part of it. Afterwards
    the units reshard after forward again, the root excepted (FSDP2 keeps the root's parameters for backward).
    A no-op for a model without FSDP2 units."""
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(not unit._get_fsdp_state()._is_root, recurse=False)


def build_parallel(cfg: LoopConfig) -> Single:
    """The ``Parallel`` of ``cfg.parallel`` (checks the launch and the batch before anything is written)."""
    return PARALLEL[cfg.parallel](cfg)


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's blocks: the members of its first ``nn.ModuleList`` (``Transformer.blocks``,
    ``Encoder.blocks``; a PEFT method leaves that list in place)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module):
            return list(module)
    return []


def take_rows(batch: Any, rank: int, world: int) -> Any:
    """Rows ``[rank n/W, (rank+1) n/W)`` of a batch of ``n`` rows: a tensor (dim 0), a list, a tuple / dict of
    them, or a dataclass whose list / tensor fields are the rows (``align.dpo.Draw``); strings and 0-d tensors
    pass as they are."""
    if isinstance(batch, torch.Tensor) and batch.dim() == 0:
        return batch  # a scalar of the whole batch (a coefficient, a count)
    if isinstance(batch, (torch.Tensor, list)):
        n = len(batch)
        if n % world:
            raise LmstackError(f"a batch of {n} rows cannot be split evenly over {world} processes: choose a "
                               f"batch_size that is a multiple of {world}")
        return batch[rank * n // world:(rank + 1) * n // world]
    if isinstance(batch, tuple):
        return tuple(take_rows(b, rank, world) for b in batch)
    if isinstance(batch, dict):
        return {k: take_rows(v, rank, world) for k, v in batch.items()}
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: take_rows(getattr(batch, f.name), rank, world)
                                             for f in dataclasses.fields(batch)
                                             if isinstance(getattr(batch, f.name), (torch.Tensor, list))})
    return batch


def _is_comm_error(e: BaseException) -> bool:
    text = str(e).lower()
    return any(k in text for k in ("gloo", "nccl", "connection", "timed out", "timeout", "peer"))


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]
