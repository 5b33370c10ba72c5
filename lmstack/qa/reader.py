"""Extractive QA: an encoder with a span head (Devlin et al. 2019, section 4.2-4.3) trained, evaluated and used.

The head scores every token as the answer's start and as its end; the answer is the best-scoring
(start <= end, at most ``max_answer_len`` tokens) span inside the context, over all windows of a long
context. For SQuAD v2 (Rajpurkar et al. 2018) the [CLS] position stands for "no answer": the question is
answered with "" when its null score beats the best span's score by more than ``null_threshold``.

A reader directory is an encoder folder in BERT format (``BertForQuestionAnswering``) plus ``reader.json``
(windowing and decoding settings).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from lmstack.devices import resolve_device
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.config import preset as model_preset
from lmstack.model.encoder_text import specials
from lmstack.model.families.bert import build_encoder, load_encoder
from lmstack.model.heads import EncoderForQuestionAnswering
from lmstack.model.hf import write_model_files
from lmstack.qa.features import Feature, collate, make_features
from lmstack.qa.metrics import squad_scores
from lmstack.qa.span_objective import SpanStartEndCE
from lmstack.qa.squad import SquadExample, read_squad, split_by_context, write_predictions
from lmstack.text.tokenizer import Tokenizer, train_bpe, train_char
from lmstack.train.objectives.epochs import train_epochs


@dataclass
class ReaderSettings:
    """How contexts are windowed and spans decoded; saved as reader.json beside the weights."""
    max_len: int = 192
    doc_stride: int = 64
    max_query_len: int = 48
    max_answer_len: int = 30  # tokens
    n_best: int = 20
    null_threshold: float | None = 0.0  # None: always answer (SQuAD v1 / CMRC data)


@dataclass
class Prediction:
    text: str  # "" = no answer
    score: float  # best span's start + end logit
    null_score_diff: float  # null score - best span score: above the threshold means "no answer"
    start: int = -1  # character span of ``text`` in the context (-1: no span)
    end: int = -1
    nbest: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # (text, probability)


def postprocess(examples: list[SquadExample], features: list[Feature], start_logits: torch.Tensor,
                end_logits: torch.Tensor, n_best: int = 20, max_answer_len: int = 30,
                null_threshold: float | None = 0.0) -> dict[str, Prediction]:
    """Best answer per example from per-window start/end logits ([N, T], padded positions ignored).

    Candidates are the ``n_best`` top starts x top ends of each window, kept where both fall in the context
    and the span is at most ``max_answer_len`` tokens; the null score is the smallest [CLS] start + end over
    the example's windows, as in BERT's run_squad.
    """
    spans: dict[int, list[tuple[float, int, int]]] = {}
    null: dict[int, float] = {}
    for f, s_row, e_row in zip(features, start_logits, end_logits):
        n = len(f.input_ids)
        k = min(n_best, n)
        tops = s_row[:n].topk(k).indices.tolist(), e_row[:n].topk(k).indices.tolist()
        s, e = s_row[:n].tolist(), e_row[:n].tolist()
        null[f.example] = min(null.get(f.example, math.inf), s[0] + e[0])
        found = spans.setdefault(f.example, [])
        for i in tops[0]:
            for j in tops[1]:
                if f.offsets[i] is None or f.offsets[j] is None or j < i or j - i + 1 > max_answer_len:
                    continue
                found.append((s[i] + e[j], f.offsets[i][0], f.offsets[j][1]))
    out = {}
    for index, found in spans.items():
        ex = examples[index]
        best: dict[str, tuple[float, int]] = {}  # text -> (score, start character)
        for sc, a, b in sorted(found, reverse=True):
            raw = ex.context[a:b]
            if raw.strip() and raw.strip() not in best:
                best[raw.strip()] = (sc, a + len(raw) - len(raw.lstrip()))
            if len(best) == n_best:
                break
        if not best:
            out[ex.id] = Prediction("", -math.inf, math.inf)
            continue
        texts = list(best)
        nbest = list(zip(texts, torch.tensor([best[t][0] for t in texts]).softmax(0).tolist()))
        (sc, a), text = best[texts[0]], texts[0]
        diff = null[index] - sc
        if null_threshold is not None and diff > null_threshold:
            out[ex.id] = Prediction("", sc, diff, nbest=nbest)
        else:
            out[ex.id] = Prediction(text, sc, diff, a, a + len(text), nbest)
    return out


class Reader:
    """A span-head model with its tokenizer and settings: ``Reader.load(dir).predict(examples)``."""

    def __init__(self, model: EncoderForQuestionAnswering, tokenizer: Tokenizer, settings: ReaderSettings):
        self.model, self.tokenizer, self.settings = model.eval(), tokenizer, settings

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> Reader:
        path = Path(directory)
        model, tokenizer = load_encoder(path, head="qa", device=resolve_device(device))
        if tokenizer is None:
            raise LmstackError(f"{path}: reader has no tokenizer.json")
        saved = path / "reader.json"
        settings = ReaderSettings(**read_json(saved)) if saved.is_file() else ReaderSettings()
        return cls(model, tokenizer, settings)

    def save(self, directory: str | Path) -> Path:
        with atomic_dir(directory) as tmp:
            write_model_files(self.model, tmp, self.tokenizer)
            write_json(tmp / "reader.json", dataclasses.asdict(self.settings))
        return Path(directory)

    def batch(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        """Padded tensors of ``features``, on the model's device."""
        device = self.model.qa_outputs.weight.device
        return {k: v.to(device) for k, v in collate(features, specials(self.tokenizer).pad_id).items()}

    def features(self, examples: list[SquadExample], train: bool = False) -> list[Feature]:
        s = self.settings
        return make_features(self.tokenizer, examples, s.max_len, s.doc_stride, s.max_query_len, train=train)

    @torch.no_grad()
    def predict(self, examples: list[SquadExample], batch_size: int = 64,
                null_threshold: float | None | Literal["saved"] = "saved") -> dict[str, Prediction]:
        """Answers keyed by example id; ``null_threshold`` overrides the saved one (None: always answer)."""
        features = self.features(examples)
        starts, ends = [], []
        for i in range(0, len(features), batch_size):
            batch = self.batch(features[i:i + batch_size])
            s, e = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            mask = batch["attention_mask"] == 0
            starts += list(s.masked_fill(mask, -1e4).float().cpu())
            ends += list(e.masked_fill(mask, -1e4).float().cpu())
        s = self.settings
        thresh = s.null_threshold if null_threshold == "saved" else null_threshold
        return postprocess(examples, features, _stack(starts), _stack(ends), s.n_best, s.max_answer_len, thresh)


def _stack(rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows of different lengths (from different batches) padded to one [N, T] tensor."""
    T = max((r.numel() for r in rows), default=0)
    return torch.stack([F.pad(r, (0, T - r.numel()), value=-1e4) for r in rows]) if rows else torch.zeros(0, 0)


def train_reader_model(reader: Reader, examples: list[SquadExample], epochs: int = 3, batch_size: int = 32,
                       lr: float = 1e-3, warmup: float = 0.1, seed: int = 0,
                       max_seconds: float | None = None) -> dict[str, float]:
    """Train the span head (and encoder) with cross-entropy on start and end positions (``SpanStartEndCE``),
    AdamW, linear warmup then linear decay. Stops early after ``max_seconds`` of training, if given."""
    torch.manual_seed(seed)
    features = reader.features(examples, train=True)
    if not features:
        raise LmstackError("no training features: every example lacks a locatable answer")
    objective = SpanStartEndCE(features, batch_size, seed, specials(reader.tokenizer).pad_id)
    run = train_epochs(objective, reader.model, epochs=epochs, lr=lr, seed=seed, warmup=warmup,
                       max_seconds=max_seconds, desc="train reader")
    return {"features": len(features), "steps": run["steps"], "loss_first": run["loss_first"],
            "loss_last": run["loss_last"], "train_seconds": run["seconds"]}


def new_reader(examples: list[SquadExample], preset: str = "bert-tiny", tokenizer: Literal["bpe", "char"] = "bpe",
               vocab_size: int = 2000, settings: ReaderSettings | None = None, seed: int = 0,
               device: str | torch.device = "cpu", **model) -> Reader:
    """A randomly initialised reader with a tokenizer trained on the examples' questions and contexts:
    byte-level BPE, or characters (one token per Chinese character, as BERT's Chinese models).
    ``model`` overrides fields of the preset (say ``n_embd=64``)."""
    settings = settings or ReaderSettings()
    texts = [t for ex in examples for t in (ex.question, ex.context)]
    tok = train_bpe(texts, vocab_size) if tokenizer == "bpe" else train_char(texts)
    torch.manual_seed(seed)
    config = model_preset(preset, **{"vocab_size": tok.vocab_size, "block_size": settings.max_len, **model})
    return Reader(EncoderForQuestionAnswering(build_encoder(config)).to(resolve_device(device)), tok, settings)


def pretrained_reader(encoder: str | Path, settings: ReaderSettings | None = None,
                      device: str | torch.device = "cpu") -> Reader:
    """A reader on a pretrained encoder folder (say all-MiniLM-L6-v2): a fresh span head, its own tokenizer."""
    model, tok = load_encoder(encoder)
    if tok is None:
        raise LmstackError(f"{encoder}: encoder folder has no tokenizer.json")
    settings = settings or ReaderSettings()
    settings.max_len = min(settings.max_len, model.config.block_size)
    return Reader(EncoderForQuestionAnswering(model).to(resolve_device(device)), tok, settings)


def _load(data: Path, holdout: float, seed: int, part: Literal["train", "test"]) -> tuple[list[SquadExample], dict]:
    examples, report = read_squad(data)
    if holdout > 0:
        train, test = split_by_context(examples, holdout, seed)
        examples = train if part == "train" else test
    return examples, report.as_dict()


def train_reader(data: Path, out: Path = Path("runs/reader"), encoder: Path | None = None,
                 preset: str = "bert-tiny", n_embd: int | None = None, tokenizer: Literal["bpe", "char"] = "bpe",
                 vocab_size: int = 2000, max_len: int = 192, doc_stride: int = 64, max_answer_len: int = 30,
                 epochs: int = 3, batch_size: int = 32, lr: float | None = None, holdout: float = 0.0, seed: int = 0,
                 max_seconds: float | None = None, device: str = "auto") -> dict:
    """Train an extractive QA reader on SQuAD-format data (a SQuAD/CMRC .json or lmstack's qa_train.jsonl).

    Args:
        data: training file
        out: reader directory to write (BERT format + reader.json)
        encoder: pretrained encoder folder to start from; without it, a new encoder and tokenizer are trained
        preset: model preset for a new encoder
        n_embd: width of a new encoder (default: the preset's)
        tokenizer: tokenizer for a new encoder: bpe, or char (better for Chinese)
        vocab_size: BPE vocabulary size for a new encoder
        max_len: tokens per window (question + context + 3 specials)
        doc_stride: tokens between the starts of consecutive windows of a long context
        max_answer_len: the longest answer, in tokens
        epochs: passes over the training windows
        batch_size: windows per step
        lr: peak learning rate (default 1e-3 for a new encoder, 5e-5 for a pretrained one)
        holdout: fraction of contexts held out (train on the rest; qa-eval with the same value scores them)
        seed: seed for initialisation, shuffling and the holdout split
        max_seconds: stop training after this long
        device: where to train: auto (cuda when available), cpu, cuda, ...
    """
    start = time.perf_counter()
    examples, report = _load(Path(data), holdout, seed, "train")
    if not examples:
        raise LmstackError(f"{data}: no questions to train on")
    v2 = any(ex.is_impossible for ex in examples)
    settings = ReaderSettings(max_len=max_len, doc_stride=doc_stride, max_answer_len=max_answer_len,
                              null_threshold=0.0 if v2 else None)
    if encoder is not None:
        reader = pretrained_reader(encoder, settings, device)
    else:
        reader = new_reader(examples, preset, tokenizer, vocab_size, settings, seed, device,
                            **({"n_embd": n_embd} if n_embd else {}))
    figures = train_reader_model(reader, examples, epochs, batch_size, lr or (1e-3 if encoder is None else 5e-5),
                                 seed=seed, max_seconds=max_seconds)
    reader.save(out)
    return {"out": str(out), "examples": len(examples), **figures, "read": report,
            "seconds": time.perf_counter() - start}


def score_predictions(examples: list[SquadExample], predictions: dict[str, Prediction],
                      null_threshold: float | None = None) -> dict[str, float]:
    """SQuAD v2 / CMRC figures (see ``metrics.squad_scores``) for predictions made with ``null_threshold=None``;
    with a threshold, answers whose null_score_diff exceeds it count as "no answer", and the best threshold
    is searched, as evaluate-v2.0.py does with its na_prob file."""
    golds = {ex.id: [a.text for a in ex.answers] for ex in examples}
    langs = {ex.id: ex.lang for ex in examples}
    texts = {q: p.text for q, p in predictions.items()}
    if null_threshold is None:
        return squad_scores(golds, texts, langs)
    na = {q: p.null_score_diff for q, p in predictions.items()}
    return squad_scores(golds, texts, langs, na, na_prob_thresh=null_threshold)


def qa_eval(data: Path, reader: Path = Path("runs/reader"), holdout: float = 0.0, seed: int = 0,
            null_threshold: float | None = None, predictions: Path | None = None, show: int = 3,
            device: str = "auto") -> dict:
    """Exact match and F1 of a reader on SQuAD-format data (official SQuAD v2 scoring; CMRC2018 scoring for
    Chinese), with HasAns/NoAns splits and the best no-answer threshold on v2 data.

    Args:
        data: evaluation file (.json SQuAD/CMRC, or .jsonl records)
        reader: reader directory from train-reader
        holdout: score only the contexts train-reader held out with this fraction and seed
        seed: the holdout split's seed
        null_threshold: override the reader's no-answer threshold
        predictions: also write {id: answer} here, the official scripts' predictions file
        show: how many example answers to include
        device: where to run the reader: auto (cuda when available), cpu, cuda, ...
    """
    start = time.perf_counter()
    examples, report = _load(Path(data), holdout, seed, "test")
    if not examples:
        raise LmstackError(f"{data}: no questions to evaluate")
    r = Reader.load(reader, device)
    v2 = any(ex.is_impossible for ex in examples)
    thresh = null_threshold if null_threshold is not None else (r.settings.null_threshold if v2 else None)
    preds = r.predict(examples, null_threshold=None)
    figures = score_predictions(examples, preds, thresh)
    answers = {q: "" if thresh is not None and p.null_score_diff > thresh else p.text for q, p in preds.items()}
    if predictions is not None:
        write_predictions(predictions, answers)
    samples = [{"question": ex.question, "prediction": answers[ex.id], "gold": [a.text for a in ex.answers]}
               for ex in examples[:show]]
    return {"data": str(data), "questions": len(examples), **figures, "null_threshold": thresh, "read": report,
            "examples": samples, "seconds": time.perf_counter() - start}
