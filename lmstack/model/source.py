"""Logit sources: what decoders read. A source owns a cache kind and turns tokens into next-token logits.

    source = to_source(model)                      # the model's own source (plain, or with virtual tokens)
    cache = source.new_cache(batch, max_len)       # the source's cache, of any KVCache kind it is given
    logits = source.prefill(idx, cache)            # [B, V]: after reading the (left-padded) prompts
    logits = source.step(tokens, cache, positions) # [B, V]: after one more token per row
    source.reorder(cache, index)                   # beam search: rows follow their parents

Greedy, sampling, beam search and the serving engine decode any ``LogitSource``; a model wrapper that puts
something in the cache before the prompt (prefix or prompt tuning) is a source of its own, and several
sources combine into one (``lmstack.generate.combine``). ``positions`` and ``key_mask`` count real tokens
only (the prompt and what has been generated), whatever a source keeps in its cache besides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from lmstack.model.blocks import KVCache

# torch.compile for one-token steps: at batch 1 a small model spends most of each step in Python and operator
# dispatch; Inductor fuses norms, activations, residual adds and cache writes into a few C++ kernels called
# from C++ (``cpp_wrapper``). Dynamic shapes: a growing cache or another prompt length reuses the same code.
# Compiled code is shared by every model of one architecture; the first call in a process takes ~10 s.
COMPILE_OPTIONS = {"cpp_wrapper": True}


def compile_cache_dir() -> Path:
    """Where compiled decode steps persist, so a model shape compiles once per machine rather than once per
    command: Inductor's on-disk caches (FX graphs, AOTAutograd, C++ kernels) under
    ``$XDG_CACHE_HOME/lmstack/compile/torch-<version>`` (default ``~/.cache``). A cache another torch version
    wrote sits in another folder and is never read; ``TORCHINDUCTOR_CACHE_DIR``, when set, wins."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "lmstack" / "compile" / f"torch-{torch.__version__}"


def compiled(model: nn.Module) -> nn.Module:
    """``model`` compiled for one-token steps (dynamic shapes), its code cached in ``compile_cache_dir``."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
    return torch.compile(model, dynamic=True, options=COMPILE_OPTIONS)


@runtime_checkable
class LogitSource(Protocol):
    """Next-token logits over a cache the source itself makes."""
    vocab_size: int
    context: int  # the most real tokens (prompt + generated) a sequence may hold
    device: torch.device

    def new_cache(self, batch_size: int, max_len: int | None = None, cache_cls: type[KVCache] = KVCache) -> KVCache:
        ...

    def prefill(self, idx: torch.Tensor, cache: KVCache, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        ...

    def step(self, tokens: torch.Tensor, cache: KVCache, positions: torch.Tensor | None = None,
             key_mask: torch.Tensor | None = None) -> torch.Tensor:
        ...

    def reorder(self, cache: KVCache, index: torch.Tensor) -> None:
        ...


class ModelSource:
    """A causal LM (``Transformer``, or a module called like one) as a logit source.

    ``compile`` runs the one-token steps through ``torch.compile`` (prefill stays eager: it runs once).
    """

    def __init__(self, model: nn.Module, compile: bool = False):
        self.model = model
        self.one_step = compiled(model) if compile else model
        self.vocab_size, self.context = model.config.vocab_size, model.config.block_size
        self.device = model.tok_emb.weight.device

    def new_cache(self, batch_size: int, max_len: int | None = None, cache_cls: type[KVCache] = KVCache) -> KVCache:
        """A ``cache_cls`` for ``batch_size`` rows of up to ``max_len`` real tokens (default: the context)."""
        w = self.model.tok_emb.weight
        return cache_cls(self.model.config, batch_size, max_len or self.context, w.device, w.dtype)

    def prefill(self, idx: torch.Tensor, cache: KVCache, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Read prompts ``idx`` [B, T] into ``cache``; the logits after each row's last token [B, V]."""
        return self.model(idx, cache, positions, key_mask, last_only=True)[:, -1]

    def step(self, tokens: torch.Tensor, cache: KVCache, positions: torch.Tensor | None = None,
             key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Read one token per row (``tokens`` [B]; ``positions`` [B, 1] or None); the next logits [B, V]."""
        return self.one_step(tokens[:, None], cache, positions, key_mask)[:, -1]

    def reorder(self, cache: KVCache, index: torch.Tensor) -> None:
        cache.reorder(index)


def to_source(model: nn.Module | LogitSource, compile: bool = False) -> LogitSource:
    """The logit source to decode ``model`` with: a source as it is, a model's own ``source()`` if it defines
    one (a wrapper that fills the cache first), else the plain ``ModelSource``."""
    if isinstance(model, LogitSource):
        return model
    own = getattr(model, "source", None)
    return own(compile=compile) if callable(own) else ModelSource(model, compile)
