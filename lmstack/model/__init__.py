"""The Transformer: configuration, blocks, assembly, and the Hugging Face on-disk format."""

from lmstack.model.blocks import KVCache
from lmstack.model.config import PRESETS, ModelConfig, preset
from lmstack.model.transformer import Transformer, build_model

__all__ = ["KVCache", "ModelConfig", "PRESETS", "Transformer", "build_model", "preset"]
