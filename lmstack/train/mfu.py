"""Model FLOPs utilisation (MFU): the share of a device's peak FLOP/s that a run's model FLOPs reach.

    MFU = tokens/s * F / peak,     F = 6N + 12 L H Q T  model FLOPs per trained token

(Chowdhery et al. 2022, PaLM, appendix B: N the parameters that multiply activations, L layers, H heads of
width Q, T the sequence length; forward + backward, without rematerialisation). The peak comes from the device's
datasheet (dense, no sparsity), chosen by ``torch.cuda.get_device_name`` and the precision the matmuls run in; a
GPU not in the table gets no MFU (one note on stderr) rather than another device's number (nanoGPT divides by
the A100's 312 TF/s everywhere, which reads > 100% on an H100). A CPU's peak is measured: the best of a few
large matmuls in the run's dtype with torch's threads, cached in ``~/.cache/lmstack/cpu_peak.json``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

TERA = 1e12

# Dense peak FLOP/s (no 2:4 sparsity) from NVIDIA's datasheets, in TFLOP/s: (bf16 tensor core, tf32, fp32).
# The datasheets print the sparse figure for the tensor cores; the dense one is half of it.
#   H100 SXM / PCIe / NVL: "NVIDIA H100 Tensor Core GPU" datasheet (2023): BF16 1,979 / 1,513 / 1,671 sparse;
#     TF32 989 / 756 / 835 sparse; FP32 67 / 51 / 60.
#   H200 SXM / NVL: "NVIDIA H200 Tensor Core GPU" datasheet (2024): BF16 1,979 / 1,671 sparse; TF32 989 / 835;
#     FP32 67 / 60.
#   A100 (SXM and PCIe, 40 and 80 GB): "NVIDIA A100 Tensor Core GPU" datasheet: BF16 312, TF32 156, FP32 19.5.
#   L4: "NVIDIA L4 Tensor Core GPU" datasheet: BF16 242 sparse, TF32 120 sparse, FP32 30.3.
#   L40S: "NVIDIA L40S" datasheet: BF16 733 sparse, TF32 366 sparse, FP32 91.6.
#   A10: "NVIDIA A10 Tensor Core GPU" datasheet: BF16 250 sparse, TF32 125 sparse, FP32 31.2.
GPU_PEAKS: list[tuple[str, str, dict[str, float]]] = [  # (regex on the device name, label, peaks in TFLOP/s)
    (r"H100.*(PCIe|PCIE)", "H100 PCIe", {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    (r"H100.*NVL", "H100 NVL", {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (r"H100.*(SXM|HBM3)", "H100 SXM", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    (r"H200.*NVL", "H200 NVL", {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (r"H200", "H200 SXM", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    (r"A100", "A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (r"L40S", "L40S", {"bf16": 366.5, "tf32": 183.0, "fp32": 91.6}),
    (r"\bL4\b", "L4", {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    (r"\bA10\b", "A10", {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2}),
]
_noted: set[str] = set()


def model_flops_per_token(model: nn.Module, seq_len: int | None) -> int | None:
    """The model's ``flops_per_token(seq_len)`` (decoders have it); None for a model without the formula."""
    flops = getattr(model, "flops_per_token", None)
    return flops(seq_len) if callable(flops) else None


def gpu_peak(name: str, precision: str) -> tuple[str, float] | None:
    """(label, peak FLOP/s) of the GPU called ``name`` for matmuls in ``precision`` (bf16 | tf32 | fp32), or None
    when the device is not in ``GPU_PEAKS``."""
    for pattern, label, peaks in GPU_PEAKS:
        if re.search(pattern, name):
            return label, peaks[precision] * TERA
    return None


def measure_matmul_flops(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 0.3) -> float:
    """FLOP/s of the best of repeated n x n @ n x n matmuls (2 n^3 FLOPs each) on the CPU in ``dtype``, timed
    for about ``seconds`` after one warm-up."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def cpu_peak(dtype: torch.dtype = torch.float32, cache: Path | None = None) -> float:
    """The CPU's matmul FLOP/s in ``dtype`` with torch's current thread count, measured once per CPU model,
    thread count, dtype and torch version and cached in ``cache`` (default ``~/.cache/lmstack/cpu_peak.json``)."""
    cache = cache or Path.home() / ".cache" / "lmstack" / "cpu_peak.json"
    key = f"{_cpu_model()}|threads={torch.get_num_threads()}|{dtype}|torch {torch.__version__}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), float):
        return known[key]
    peak = measure_matmul_flops(dtype)
    try:  # a cache that cannot be written only costs the measurement next time
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**(known if isinstance(known, dict) else {}), key: peak}, indent=1))
        tmp.replace(cache)
    except OSError:
        pass
    return peak


@dataclass
class Utilisation:
    """MFU of a run: ``flops_per_token`` model FLOPs per token, ``peak`` the device's FLOP/s (None: unknown)."""

    flops_per_token: int | None
    peak: float | None
    device: str

    def mfu(self, tokens_per_s: float) -> float | None:
        """tokens/s * F / peak, or None when the formula or the peak is unknown."""
        if self.flops_per_token is None or not self.peak:
            return None
        return tokens_per_s * self.flops_per_token / self.peak


def utilisation(model: nn.Module, seq_len: int | None, device: torch.device, bf16: bool,
                cache: Path | None = None) -> Utilisation:
    """The MFU meter of ``model`` trained on ``device`` (under bf16 autocast or not): the peak is the table's for
    a known GPU (tf32 when fp32 matmuls may use TF32), measured for a CPU, None otherwise (noted once)."""
    flops = model_flops_per_token(model, seq_len)
    if flops is None:
        return Utilisation(None, None, device.type)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
        found = gpu_peak(name, "bf16" if bf16 else "tf32" if tf32 else "fp32")
        if found is None:
            _note_once(name, f"note: no peak FLOP/s known for '{name}'; MFU is not reported (add it to "
                             "lmstack.train.mfu.GPU_PEAKS from its datasheet)")
            return Utilisation(flops, None, name)
        return Utilisation(flops, found[1], found[0])
    if device.type == "cpu":
        dtype = torch.bfloat16 if bf16 else torch.float32
        return Utilisation(flops, cpu_peak(dtype, cache), f"cpu ({_cpu_model()}, {torch.get_num_threads()} threads)")
    _note_once(device.type, f"note: no peak FLOP/s known for device type '{device.type}'; MFU is not reported")
    return Utilisation(flops, None, device.type)


def _note_once(key: str, message: str) -> None:
    if key not in _noted:
        _noted.add(key)
        print(message, file=sys.stderr, flush=True)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
