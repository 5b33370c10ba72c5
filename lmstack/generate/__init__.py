"""Decoding: greedy, sampling and beam search on a KV cache, logits processors, streaming text."""

from lmstack.generate.api import generate, stream
from lmstack.generate.config import GenerationConfig
from lmstack.generate.layout import decode_layout

__all__ = ["GenerationConfig", "decode_layout", "generate", "stream"]
