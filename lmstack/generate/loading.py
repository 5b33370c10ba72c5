"""A model directory loaded for decoding, as ``generate``, ``chat`` and ``serve`` share it: the adapter applied
(LoRA merged into the weights, so it decodes at the base model's speed; the others stay modules), the weights
in the decoding dtype, and fp32 weights laid out for one-token steps (``decode_layout``).

``--dtype auto`` picks bf16 where it pays: bf16 matmuls native on the device (CUDA, or a CPU with AVX512-BF16 /
AMX) and fp32 weights over ``AUTO_BF16_BYTES``. One token at a time, a large model's step is reading its weights
from memory, which bf16 halves; a small model's step is operator overhead, which bf16 casts only add to (the demo
model decodes faster in fp32 on such a CPU). Elsewhere fp32.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lmstack.adapt.lora import merge
from lmstack.adapt.methods import load_adapted
from lmstack.devices import bf16_is_native
from lmstack.errors import LmstackError
from lmstack.generate.layout import decode_layout
from lmstack.generate.speculative import Drafter, DraftModel, PromptLookup
from lmstack.text.tokenizer import Tokenizer

DecodingDtype = Literal["auto", "float32", "bfloat16"]
AUTO_BF16_BYTES = 64 * 2**20  # fp32 weights above this decode in bf16 under --dtype auto, where bf16 is native


def decoding_dtype(dtype: DecodingDtype, model: nn.Module, device: torch.device) -> torch.dtype:
    """The weights dtype for ``dtype`` ("auto", "float32", "bfloat16") of ``model`` on ``device``. bfloat16 asked
    for where it is emulated still runs (correct, slower than fp32), after one line on stderr saying so."""
    if dtype == "float32":
        return torch.float32
    native = bf16_is_native(device)
    if dtype == "bfloat16":
        if not native:
            print(f"lmstack: --dtype bfloat16: {device.type} has no native bf16 (CUDA bf16, AVX512-BF16 or AMX), so "
                  "it is emulated and slower than float32; --dtype auto picks float32 here", file=sys.stderr)
        return torch.bfloat16
    weight_bytes = sum(p.numel() * 4 for p in {id(p): p for p in model.parameters()}.values())
    return torch.bfloat16 if native and weight_bytes > AUTO_BF16_BYTES else torch.float32


def load_for_decoding(model_dir: str | Path, adapter_dir: str | Path | None = None,
                      device: str | torch.device = "cpu", dtype: DecodingDtype = "auto"
                      ) -> tuple[nn.Module, Tokenizer]:
    """The model (eval mode, in its decoding dtype, laid out for one-token steps) and tokenizer of a model
    directory, with an adapter applied."""
    model, tokenizer = load_adapted(model_dir, adapter_dir, device=str(device))
    model = merge(model).eval()
    chosen = decoding_dtype(dtype, model, torch.device(device))
    model = model.to(chosen)
    if torch.device(device).type == "cpu":
        decode_layout(model)  # fp32 weights only
    return model, tokenizer


def load_drafter(tokenizer: Tokenizer, draft: str | Path | None = None, prompt_lookup: int = 0, num_draft: int = 4,
                 device: str | torch.device = "cpu", dtype: DecodingDtype = "auto") -> Drafter | None:
    """The drafter ``--draft DIR`` (a smaller model on the same tokenizer, loaded as the target is) or
    ``--prompt-lookup N`` asks for, drafting ``num_draft`` tokens a pass; None for neither."""
    if draft is not None and prompt_lookup:
        raise LmstackError("choose one drafter: --draft or --prompt-lookup")
    if num_draft < 1:
        raise LmstackError(f"--num-draft must be at least 1, got {num_draft}")
    if prompt_lookup:
        return PromptLookup(prompt_lookup, num_draft)
    if draft is None:
        return None
    return DraftModel(load_companion(draft, tokenizer, "--draft", device, dtype), num_draft)


def load_companion(model_dir: str | Path, tokenizer: Tokenizer, flag: str, device: str | torch.device = "cpu",
                   dtype: DecodingDtype = "auto") -> nn.Module:
    """A second model decoded beside the main one (a draft, a DExperts expert, a contrastive amateur), loaded as
    it is; one on another tokenizer (compared by sha256) is refused, naming ``flag``."""
    model, own = load_for_decoding(model_dir, None, device, dtype)
    if own.sha256 != tokenizer.sha256:
        raise LmstackError(f"{flag} {model_dir}: its tokenizer differs from the model's ({own.vocab_size} vs "
                           f"{tokenizer.vocab_size} tokens, another sha256); it must share the model's tokenizer")
    return model
