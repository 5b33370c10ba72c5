"""``empty_weights()``: build a model whose weights are about to be loaded, spending neither memory nor time.

Modules built inside are on the "meta" device (shapes, no data), as in accelerate's ``init_empty_weights``,
and their initialisers (``nn.init``, in-place random fills) are skipped: on "meta" they would only run
torch's Python reference kernels, whose first call imports torch._dynamo (about a second of start-up).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_INITIALISERS = frozenset({
    nn.init.normal_, nn.init.uniform_, nn.init.constant_, nn.init.kaiming_uniform_,
    torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.fill_, torch.Tensor.zero_, torch.Tensor.erfinv_,
    torch.Tensor.clamp_, torch.Tensor.mul_, torch.Tensor.add_,
})


class _SkipInitialisers(TorchFunctionMode):
    """An initialiser called on a meta tensor returns it as it is (there is nothing to fill)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _INITIALISERS:
            tensor = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Modules built in this block have meta tensors for weights, uninitialised: load real ones with
    ``load_state_dict(..., assign=True)``."""
    with torch.device("meta"), _SkipInitialisers():
        yield
