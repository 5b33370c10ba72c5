"""The Transformer: configuration, blocks, the model families, and the Hugging Face on-disk format."""

from lmstack.model.blocks import KVCache
from lmstack.model.config import PRESETS, ModelConfig, preset
from lmstack.model.families import bert, gpt2, llama  # noqa: F401  (the built-in families register themselves)
from lmstack.model.families import build_model, linear_slices
from lmstack.model import sequence_classification  # noqa: F401  (registers the decoder score head)
from lmstack.model.transformer import Transformer

__all__ = ["KVCache", "ModelConfig", "PRESETS", "Transformer", "build_model", "linear_slices", "preset"]
