"""The one-token decode step compiled by ``torch.compile`` (TorchInductor).

At batch 1 a small model spends most of each step in Python and operator dispatch, not arithmetic:
Inductor fuses the norms, activations, residual adds and cache writes into a few generated C++ kernels,
and ``cpp_wrapper`` calls them from C++ instead of Python. Shapes are compiled dynamic, so a growing cache
or another prompt length reuses the same code (batch size 1 and larger batches compile once each).
Compiled code is shared by every model of the same architecture in the process, and the kernels are cached
on disk: the first call in a fresh process takes about 10 s (30 s with a cold disk cache).
"""

from __future__ import annotations

import torch

from lmstack.model import Transformer

OPTIONS = {"cpp_wrapper": True}


def compiled_step(model: Transformer) -> torch.nn.Module:
    """``model`` compiled for one-token steps; call it as the model: (idx, cache, positions, key_mask)."""
    return torch.compile(model, dynamic=True, options=OPTIONS)
