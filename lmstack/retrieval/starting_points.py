"""Where training an encoder task begins: a saved model to continue, any BERT directory, or a fresh encoder.

``fresh_encoder`` builds a new encoder for a ``ModelConfig`` or preset name, sized to a tokenizer's vocabulary
(the dual encoder, the cross-encoder and the multiple-choice head all start from it); ``dense_starting_point``
and ``rerank_starting_point`` wrap what they find in a ``DualEncoder`` or a ``CrossEncoder``.
"""

from __future__ import annotations

from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.io import read_json
from lmstack.model.config import PRESETS, ModelConfig, preset
from lmstack.model.encoder import Encoder
from lmstack.model.families.bert import build_encoder
from lmstack.model.heads import EncoderForSequenceClassification
from lmstack.model.families.bert import load_encoder
from lmstack.retrieval.cross_encoder import CrossEncoder
from lmstack.retrieval.dual_encoder import DualEncoder, Pooling
from lmstack.text.tokenizer import Tokenizer


def fresh_encoder(encoder: str | Path | ModelConfig, tokenizer: str | Path | Tokenizer | None
                  ) -> tuple[Encoder, Tokenizer] | None:
    """A new encoder for a ``ModelConfig`` or preset name, sized to ``tokenizer``'s vocabulary; None when
    ``encoder`` is a directory (which brings its own tokenizer)."""
    if not (isinstance(encoder, ModelConfig) or (isinstance(encoder, str) and encoder in PRESETS
                                                 and not Path(encoder).exists())):
        if tokenizer is not None:
            raise LmstackError(f"{encoder}: a saved encoder brings its own tokenizer; drop the tokenizer argument")
        return None
    if tokenizer is None:
        raise LmstackError(f"encoder {encoder if isinstance(encoder, str) else 'config'} is built fresh: give a "
                           "tokenizer (a folder with tokenizer.json, e.g. one lmstack prepare wrote)")
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.load(tokenizer)
    config = encoder if isinstance(encoder, ModelConfig) else preset(encoder)
    return build_encoder(config.replace(vocab_size=tok.vocab_size)), tok


def dense_starting_point(encoder: str | Path | ModelConfig, tokenizer: str | Path | Tokenizer | None,
                         pooling: Pooling | None, max_len: int) -> DualEncoder:
    """The dual encoder training starts from: a saved one (its pooling unless ``pooling`` is given), any BERT
    directory, or a fresh encoder of a config / preset name with ``tokenizer``'s vocabulary."""
    fresh = fresh_encoder(encoder, tokenizer)
    if fresh is not None:
        return DualEncoder(*fresh, pooling or "mean", max_len)
    model = DualEncoder.load(encoder)
    model.pooling = pooling or model.pooling
    model.max_len = min(max_len, model.encoder.config.block_size)
    return model


def rerank_starting_point(encoder: str | Path | ModelConfig, tokenizer: str | Path | Tokenizer | None,
                          max_len: int) -> CrossEncoder:
    """A cross-encoder folder to continue, or a score head on a fresh encoder or any BERT directory's."""
    fresh = fresh_encoder(encoder, tokenizer)
    path = Path(encoder) if fresh is None else None
    if path is not None and path.is_dir() and \
            (read_json(path / "config.json").get("architectures") or [None])[0] == "BertForSequenceClassification":
        model = CrossEncoder.load(path)
        model.max_len = min(max_len, model.model.config.block_size)
        return model
    body, tok = fresh or load_encoder(path, head=None)
    if tok is None:
        raise LmstackError(f"{path}: no tokenizer.json beside the encoder")
    return CrossEncoder(EncoderForSequenceClassification(body, num_labels=1), tok, max_len)
