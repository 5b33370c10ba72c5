"""Where tensors live: ``auto`` picks CUDA when present, and whether bf16 is worth using there."""

from __future__ import annotations

from pathlib import Path

import torch

from lmstack.errors import LmstackError


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available, else cpu; any other name as torch spells it (cpu, cuda, cuda:1, mps)."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise LmstackError(f"device: '{name}' is not a valid torch device") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LmstackError(f"device: '{name}' asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
                           "use --device cpu or auto")
    return device


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 matmuls run in hardware: CUDA with bf16, or a CPU with AVX512-BF16 or AMX (where autocast
    halves the matmul time; emulated bf16 would be slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether a run of ``precision`` ("auto", "fp32", "bf16") computes under bf16 autocast on ``device``:
    "bf16" always, "auto" where bf16 matmuls are native."""
    return precision == "bf16" or (precision == "auto" and bf16_is_native(device))
