"""Dense retrieval's encoder: one BERT encoder for queries and passages, pooled to one L2-normalised vector.

A bi-encoder in the style of Sentence-BERT (Reimers & Gurevych 2019) and DPR (Karpukhin et al. 2020), trained
with the InfoNCE loss (van den Oord et al. 2018, ``info_nce``): each query must pick its positive passage out of
the batch's other positives (in-batch negatives) and any mined hard negatives (say, BM25's top non-answers).
Training is ``retrieval.dense_training``; the starting points it begins from are ``retrieval.starting_points``.

On disk it is a sentence-transformers folder: a BERT model directory plus ``modules.json``,
``1_Pooling/config.json`` and ``sentence_bert_config.json``. So ``DualEncoder.load`` reads a local
all-MiniLM-L6-v2 as is, and what we save loads in sentence-transformers and as ``transformers.BertModel``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.encoder import Encoder
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.heads import pool
from lmstack.model.families.bert import fingerprint, load_encoder
from lmstack.model.hf import write_model_files
from lmstack.text.tokenizer import Tokenizer

Pooling = Literal["mean", "cls"]
_ST = "sentence_transformers.models."


class DualEncoder:
    def __init__(self, encoder: Encoder, tokenizer: Tokenizer, pooling: Pooling = "mean", max_len: int = 256,
                 normalize: bool = True):
        if pooling not in ("mean", "cls"):
            raise LmstackError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder, self.tokenizer, self.pooling, self.normalize = encoder, tokenizer, pooling, normalize
        self.max_len = min(max_len, encoder.config.block_size)

    @property
    def fingerprint(self) -> str:
        """sha256 of weights, config, tokenizer and pooling (hashes every weight: compute it once per use)."""
        return fingerprint(self.encoder, self.tokenizer, pooling=self.pooling, normalize=self.normalize,
                           max_len=self.max_len)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """[N, d] vectors for ``texts``, differentiable (training); ``encode`` is the batched inference path."""
        device = self.encoder.tok_emb.weight.device
        batch = {k: v.to(device) for k, v in encode_pairs(self.tokenizer, texts, max_len=self.max_len).items()}
        v = pool(self.encoder(**batch), batch["attention_mask"], self.pooling)
        return F.normalize(v, dim=-1) if self.normalize else v

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """float32 [N, d]. Texts are batched longest first, so each batch pads to similar lengths."""
        was_training = self.encoder.training
        self.encoder.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.encoder.config.n_embd), dtype=np.float32)
        for start in tqdm(range(0, len(order), batch_size), desc="encode", unit="batch", file=sys.stderr,
                          disable=not show_progress, mininterval=1.0):
            rows = order[start:start + batch_size]
            out[rows] = self.embed([texts[i] for i in rows]).float().cpu().numpy()
        self.encoder.train(was_training)
        return out

    def save(self, path: str | Path) -> Path:
        """Write a sentence-transformers folder (atomically): BERT files at the top, pooling beside them."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            write_model_files(self.encoder, tmp, self.tokenizer)
            modules = [("", "Transformer"), ("1_Pooling", "Pooling")] + [("2_Normalize", "Normalize")] * self.normalize
            write_json(tmp / "modules.json", [{"idx": i, "name": str(i), "path": p, "type": _ST + t}
                                              for i, (p, t) in enumerate(modules)])
            write_json(tmp / "sentence_bert_config.json", {"max_seq_length": self.max_len, "do_lower_case": False})
            write_json(tmp / "1_Pooling" / "config.json", {
                "word_embedding_dimension": self.encoder.config.n_embd,
                "pooling_mode_cls_token": self.pooling == "cls", "pooling_mode_mean_tokens": self.pooling == "mean",
                "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
            if self.normalize:
                (tmp / "2_Normalize").mkdir()
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> DualEncoder:
        """A folder we saved, a sentence-transformers folder (all-MiniLM-L6-v2, ...), or any BERT directory
        (then: mean pooling, normalised, up to the model's positions)."""
        path = Path(path)
        model_dir, pooling, normalize, max_len = _sentence_transformers_layout(path)
        encoder, tokenizer = load_encoder(model_dir, head=None, device=device)
        if tokenizer is None:
            raise LmstackError(f"{model_dir}: no tokenizer.json beside the encoder")
        return cls(encoder, tokenizer, pooling, max_len or encoder.config.block_size, normalize)


def _sentence_transformers_layout(path: Path) -> tuple[Path, Pooling, bool, int | None]:
    """(model directory, pooling, normalize, max_len) from modules.json; defaults where the folder has none."""
    if not (path / "modules.json").is_file():
        return path, "mean", True, None
    modules = read_json(path / "modules.json")
    by_type = {m.get("type", "").rsplit(".", 1)[-1]: path / m.get("path", "") for m in modules}
    model_dir = by_type.get("Transformer", path)
    pooling: Pooling = "mean"
    if "Pooling" in by_type:
        cfg = read_json(by_type["Pooling"] / "config.json")
        modes = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v]
        if modes not in (["pooling_mode_mean_tokens"], ["pooling_mode_cls_token"]):
            raise LmstackError(f"{by_type['Pooling'] / 'config.json'}: pooling {modes} is not supported "
                               "(only pooling_mode_mean_tokens or pooling_mode_cls_token)")
        pooling = "mean" if modes == ["pooling_mode_mean_tokens"] else "cls"
    st_config = model_dir / "sentence_bert_config.json"
    max_len = read_json(st_config).get("max_seq_length") if st_config.is_file() else None
    return model_dir, pooling, "Normalize" in by_type, max_len


def info_nce(queries: torch.Tensor, docs: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018): query i's positive is ``docs[i]``; every other row of ``docs``
    (the batch's other positives, then any hard negatives) is a negative for it.

        L = -1/B sum_i log( exp(q_i . d_i / t) / sum_j exp(q_i . d_j / t) )
    """
    logits = queries @ docs.T / temperature
    return F.cross_entropy(logits.float(), torch.arange(len(queries), device=logits.device))
