"""Decoding: greedy, sampling and beam search on a KV cache, logits processors, streaming text."""

from lmstack.generate.api import generate, stream
from lmstack.generate.config import GenerationConfig

__all__ = ["GenerationConfig", "generate", "stream"]
