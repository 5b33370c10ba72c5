"""Decoding over logit sources: greedy, sampling and beam search, logits processors, mixtures of sources
(DExperts, contrastive decoding), structured outputs (JSON-schema / Lark grammars), streaming text."""

from lmstack.generate.api import generate, stream
from lmstack.generate.combine import Mixture, contrastive, dexperts
from lmstack.generate.config import GenerationConfig
from lmstack.generate.grammar import Grammar
from lmstack.generate.layout import decode_layout

__all__ = ["GenerationConfig", "Grammar", "Mixture", "contrastive", "decode_layout", "dexperts", "generate", "stream"]
