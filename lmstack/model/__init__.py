"""The Transformer: configuration, blocks, the model families, and the Hugging Face on-disk format."""

from lmstack.model.blocks import KVCache
from lmstack.model.config import PRESETS, ModelConfig, preset
from lmstack.model.families import bert, gpt2, llama  # noqa: F401  (the built-in families register themselves)
from lmstack.model.families import prefix_lm  # noqa: F401  (a decoder with a bidirectional prefix)
from lmstack.model.families import t5  # noqa: F401  (the T5 v1.1 encoder-decoder)
from lmstack.model.families import mixtral, qwen2_moe  # noqa: F401  (mixtures of experts on the Llama body)
from lmstack.model.families import build_model, linear_slices
from lmstack.model import sequence_classification  # noqa: F401  (registers the decoder score head)
from lmstack.model.transformer import Transformer

__all__ = ["KVCache", "ModelConfig", "PRESETS", "Transformer", "build_model", "linear_slices", "preset"]
