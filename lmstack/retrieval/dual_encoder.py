"""Dense retrieval's encoder: one BERT encoder for queries and passages, pooled to one L2-normalised vector.

A bi-encoder in the style of Sentence-BERT (Reimers & Gurevych 2019) and DPR (Karpukhin et al. 2020), trained
with the InfoNCE loss (van den Oord et al. 2018): each query must pick its positive passage out of the batch's
other positives (in-batch negatives) and any mined hard negatives (say, BM25's top non-answers).

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

from lmstack.text.tokenizer import Tokenizer
from lmstack.devices import resolve_device
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, read_jsonl, write_json
from lmstack.model.config import PRESETS, ModelConfig, preset
from lmstack.model.encoder import Encoder
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.heads import pool
from lmstack.model.families.bert import build_encoder, fingerprint, load_encoder
from lmstack.model.hf import write_model_files
from lmstack.train.epochs import fit

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
    """InfoNCE: query i's positive is ``docs[i]``; every other row of ``docs`` is a negative for it."""
    logits = queries @ docs.T / temperature
    return F.cross_entropy(logits.float(), torch.arange(len(queries), device=logits.device))


def train_dual_encoder(pairs: list[tuple[str, str]], out: str | Path, encoder: str | Path | ModelConfig,
                       tokenizer: str | Path | Tokenizer | None = None, negatives: list[list[str]] | None = None,
                       pooling: Pooling | None = None, epochs: int = 1, batch_size: int = 32, lr: float = 5e-5,
                       temperature: float = 0.05, max_len: int = 128, seed: int = 0,
                       device: str | torch.device = "cpu", show_progress: bool = False) -> dict:
    """Fine-tune (or train from scratch) a dual encoder on (query, positive passage) pairs; save it to ``out``.

    ``encoder`` is a model directory (a BERT / sentence-transformers folder, or lmstack's MLM output), a
    ``ModelConfig`` or a preset name (both then need ``tokenizer``). ``negatives[i]`` are hard negatives of
    query i; every query sees all the batch's passages, positives and hard negatives alike.
    """
    if negatives is not None and len(negatives) != len(pairs):
        raise LmstackError(f"{len(pairs)} pairs but {len(negatives)} lists of negatives")
    torch.manual_seed(seed)
    model = starting_point(encoder, tokenizer, pooling, max_len)
    model.encoder.to(resolve_device(device))
    rows = list(zip(pairs, negatives or [[] for _ in pairs]))

    def loss_of(batch: list[tuple[tuple[str, str], list[str]]]) -> torch.Tensor:
        docs = [pos for (_, pos), _ in batch] + [n for _, negs in batch for n in negs]
        return info_nce(model.embed([q for (q, _), _ in batch]), model.embed(docs), temperature)

    run = fit(model.encoder, rows, loss_of, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
              desc="train dense", show_progress=show_progress)
    model.save(out)
    return {"out": str(out), "pairs": len(pairs), "steps": run["steps"], "first_loss": run["first_loss"],
            "last_loss": run["last_loss"], "wall_s": run["seconds"], "params": model.encoder.num_params(),
            "fingerprint": model.fingerprint}


def starting_point(encoder: str | Path | ModelConfig, tokenizer: str | Path | Tokenizer | None,
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


def read_examples(path: str | Path, negatives_from: str | Path | None = None,
                  mined: int = 3) -> list[tuple[str, str, list[str]]]:
    """(query, positive, negatives) from a .jsonl of {"query": str, "positive": str, "negatives"?: [str]}, with
    ``mined`` more negatives per query from the index at ``negatives_from`` if given."""
    path = Path(path)
    examples = []
    for where, row in read_jsonl(path):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("query", "positive")):
            raise LmstackError(f"{where}: expected an object with string fields 'query' and 'positive'")
        negs = row.get("negatives", [])
        if not isinstance(negs, list) or not all(isinstance(x, str) for x in negs):
            raise LmstackError(f"{where}: 'negatives' must be a list of strings")
        examples.append((row["query"], row["positive"], negs))
    if not examples:
        raise LmstackError(f"{path}: no examples")
    if negatives_from is None:
        return examples
    from lmstack.retrieval.negatives import mine_negatives  # loads bm25s and faiss: only when mining

    return mine_negatives(examples, negatives_from, mined)


def train_dense(data: Path, out: Path = Path("runs/dense"), encoder: str = "bert-tiny", tokenizer: Path | None = None,
                pooling: Pooling | None = None, epochs: int = 1, batch_size: int = 32, lr: float = 5e-5,
                temperature: float = 0.05, max_len: int = 128, seed: int = 0, device: str = "auto",
                negatives_from: Path | None = None, mined_negatives: int = 3) -> dict:
    """Train a dual encoder (bi-encoder) for dense retrieval with in-batch and hard negatives (InfoNCE).

    Args:
        data: .jsonl file, one {"query", "positive", "negatives"?: [...]} object per line
        out: folder for the trained encoder (a sentence-transformers / BERT folder)
        encoder: model directory to start from (BERT, sentence-transformers, lmstack mlm), or a preset name
        tokenizer: folder with tokenizer.json, for an encoder built fresh from a preset
        pooling: mean or cls; unset keeps a saved encoder's pooling (mean for a fresh one)
        epochs: passes over the data
        batch_size: queries per batch (each sees the batch's other passages as negatives)
        lr: AdamW learning rate
        temperature: softmax temperature of the InfoNCE loss
        max_len: tokens per text, [CLS] and [SEP] included
        seed: shuffling and initialisation seed
        device: where to train: auto (cuda when available), cpu, cuda, ...
        negatives_from: index folder (say BM25 over the passages): its top passages for each query that are
            not the positive become hard negatives
        mined_negatives: hard negatives mined per query
    """
    examples = read_examples(data, negatives_from, mined_negatives)
    negatives = [negs for _, _, negs in examples] if any(negs for _, _, negs in examples) else None
    return train_dual_encoder([(q, p) for q, p, _ in examples], out, encoder, tokenizer, negatives, pooling, epochs,
                              batch_size, lr, temperature, max_len, seed, device, show_progress=True)
