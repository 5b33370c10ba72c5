"""Weight layout for decoding, where every linear layer is a matrix-vector product.

One token at a time, a layer's cost is streaming its weight from memory, and the BLAS streams a weight
fastest along its longer side: on this project's CPU (MKL sgemm, fp32) a [768, 50257] weight read row by
row goes about twice as fast as the [50257, 768] ``nn.Linear`` stores, and the GPT-2-small q/k/v and MLP-up
weights 1.5x. So ``decode_layout`` stores each weight whose output side is the longer transposed in memory
(GPT-2's own Conv1D layout), seen through a transposed view: shapes, values and the tied embedding stay as
they were, and the results are the same up to float rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from lmstack.model import Transformer


def decode_layout(model: Transformer) -> Transformer:
    """Re-lay ``model``'s fp32 linear weights in place for one-token decoding; returns ``model``."""
    with torch.no_grad():
        for module in model.modules():
            w = module.weight if isinstance(module, nn.Linear) else None
            if w is not None and w.dtype == torch.float32 and w.size(0) >= w.size(1) and w.is_contiguous():
                w.data = w.data.t().contiguous().t()
    return model
