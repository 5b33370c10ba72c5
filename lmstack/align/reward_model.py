"""Reward models: one scalar r(x, y) for a prompt x and a reply y (Ouyang et al. 2022, section 3.5), on a decoder
or on an encoder, and the scorer every later stage (PPO, GRPO, reward-eval) reads rewards from.

- **decoder** (``model.sequence_classification.DecoderForSequenceClassification``): the chat template renders
  x and y exactly as ``align.data`` encodes them (prompt ids + answer ids, to the turn end) and the score head
  reads the last real token; saved as ``LlamaForSequenceClassification`` / ``Qwen2...`` / ``GPT2...``.
- **encoder** (``model.heads.EncoderForSequenceClassification``, a cross-encoder): ``[CLS] x [SEP] y [SEP]``, the
  prompt's turns as plain text (its tail is kept when the pair is too long), saved as
  ``BertForSequenceClassification`` with one label, the shape of OpenAssistant's deberta reward models.

Where each kind differs (how a pair becomes ids, which tensors the model takes) is its ``PairText``, chosen once
when the model is built or loaded. A reward model folder is a plain Hugging Face directory; the pair length it
was trained with rides in tokenizer_config.json's ``model_max_length``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lmstack.align.data import answer_ids, encode_pairs, prompt_ids
from lmstack.data.preferences import Preference
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.encoder_text import specials
from lmstack.model.families.bert import load_encoder
from lmstack.model.heads import EncoderForSequenceClassification
from lmstack.model.hf import from_hf_config, load_causal_lm, load_model, write_model_files
from lmstack.model.registry import family_for_hf, head_for_hf
from lmstack.model.sequence_classification import SEQUENCE_CLASSIFICATION, DecoderForSequenceClassification
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer

Kind = Literal["decoder", "encoder"]


@dataclass(frozen=True)
class TextPair:
    """One (prompt, reply) as the reward model's token ids: ``first`` (the prompt) and ``second`` (the reply)."""
    first: list[int]
    second: list[int]


@dataclass(frozen=True)
class EncodedPair:
    """A comparison as token ids: the prompt and both replies (``kind``'s ids), where it came from, its margin."""
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    where: str
    margin: float = 0.0


class PairText:
    """How prompts and replies become one reward model's inputs (the base: what both kinds share)."""

    kind: Kind

    def __init__(self, tokenizer: Tokenizer, max_len: int):
        self.tokenizer, self.max_len = tokenizer, max_len

    def encode(self, records: list[Preference], margin: float) -> tuple[list[EncodedPair], dict]:
        """Every comparison as ids (``margin``: where a record has no "margin" field)."""
        raise NotImplementedError

    def pair(self, prompt: list[dict], reply: str, where: str) -> TextPair:
        """One reply to score."""
        raise NotImplementedError

    def inputs(self, rows: list[TextPair]) -> dict[str, torch.Tensor]:
        """The model's keyword arguments for ``rows``, right-padded."""
        raise NotImplementedError


def record_margin(record: Preference, default: float) -> float:
    """The record's own "margin" field (a number), else ``default``."""
    value = record.meta.get("margin", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise LmstackError(f"{record.where}: margin must be a finite number, got {value!r}")
    return float(value)


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


class DecoderText(PairText):
    """prompt ids (the chat template, opening the assistant's turn) + answer ids (to the turn end), as
    ``align.data``; the head pools the last non-pad token."""

    kind: Kind = "decoder"

    def __init__(self, tokenizer: Tokenizer, max_len: int):
        super().__init__(tokenizer, max_len)
        if tokenizer.pad_id is None:
            raise LmstackError("the tokenizer has no pad token; a decoder reward model reads the last non-pad token "
                               "of each padded row (add a pad token to the tokenizer)")
        self.chat = ChatFormat(tokenizer)

    def encode(self, records: list[Preference], margin: float) -> tuple[list[EncodedPair], dict]:
        margins = {r.where: record_margin(r, margin) for r in records}
        examples, stats = encode_pairs(self.chat, records, self.max_len)
        return [EncodedPair(e.prompt, e.chosen, e.rejected, e.where, margins[e.where]) for e in examples], stats

    def pair(self, prompt: list[dict], reply: str, where: str) -> TextPair:
        first = prompt_ids(self.chat, prompt, self.max_len, 1, where)
        return TextPair(first, answer_ids(self.chat, prompt, first, reply, where)[:self.max_len - len(first)])

    def inputs(self, rows: list[TextPair]) -> dict[str, torch.Tensor]:
        ids, mask = _pad([r.first + r.second for r in rows], self.tokenizer.pad_id)
        return {"input_ids": ids, "attention_mask": mask}


def prompt_text(messages: list[dict]) -> str:
    """The prompt an encoder reads: a single user turn as is; several turns as "role: content" lines."""
    if len(messages) == 1:
        return str(messages[0].get("content") or "")
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in messages)


class EncoderText(PairText):
    """``[CLS] prompt [SEP] reply [SEP]`` with segment ids 0 / 1; a pair that does not fit keeps the prompt's tail
    (at least half the room when it is long: the last turn matters most) and the reply's head."""

    kind: Kind = "encoder"

    def __init__(self, tokenizer: Tokenizer, max_len: int):
        super().__init__(tokenizer, max_len)
        if max_len < 5:
            raise LmstackError(f"max_len {max_len} leaves no room for [CLS] prompt [SEP] reply [SEP]")
        self.specials = specials(tokenizer)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, specials=False)

    def encode(self, records: list[Preference], margin: float) -> tuple[list[EncodedPair], dict]:
        out, truncated = [], 0
        for r in records:
            if not r.chosen.strip() and not r.rejected.strip():
                raise LmstackError(f"{r.where}: chosen and rejected are both empty")
            p, c, j = self._ids(prompt_text(r.prompt)), self._ids(r.chosen), self._ids(r.rejected)
            truncated += len(p) + max(len(c), len(j)) + 3 > self.max_len
            out.append(EncodedPair(p, c, j, r.where, record_margin(r, margin)))
        if not out:
            raise LmstackError("no preference pairs to train or evaluate on")
        return out, {"pairs": len(out), "truncated": truncated, "dropped": 0}

    def pair(self, prompt: list[dict], reply: str, where: str) -> TextPair:
        return TextPair(self._ids(prompt_text(prompt)), self._ids(reply))

    def inputs(self, rows: list[TextPair]) -> dict[str, torch.Tensor]:
        s, budget = self.specials, self.max_len - 3
        framed, types = [], []
        for r in rows:
            keep = min(len(r.first), max(budget - len(r.second), budget // 2))
            first, second = r.first[len(r.first) - keep:], r.second[:budget - keep]
            framed.append([s.cls_id, *first, s.sep_id, *second, s.sep_id])
            types.append([0] * (keep + 2) + [1] * (len(second) + 1))
        ids, mask = _pad(framed, s.pad_id)
        token_types, _ = _pad(types, 0)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}


TEXTS: dict[Kind, type[PairText]] = {"decoder": DecoderText, "encoder": EncoderText}


# ----------------------------------------------------------------------------------------------- folders

def folder_kind(path: Path) -> tuple[Kind, bool]:
    """(kind, is a reward model already) of a model folder; anything else is refused in one line."""
    if not path.is_dir():
        raise LmstackError(f"{path}: model directory not found")
    hf = read_json(path / "config.json")
    family = family_for_hf(hf, str(path / "config.json"))
    archs = hf.get("architectures") or []
    if family.generates:
        head = head_for_hf(hf, family)
        if head is None:
            return "decoder", False
        if head is not SEQUENCE_CLASSIFICATION:
            raise LmstackError(f"{path}: holds a {archs[0]}, which is no reward model (a one-label "
                               "*ForSequenceClassification)")
        labels = len(hf.get("id2label") or {}) or hf.get("num_labels", 2)
        if labels != 1:
            raise LmstackError(f"{path}: a {archs[0]} with {labels} labels is a classifier; a reward model has one")
        return "decoder", True
    if "BertForSequenceClassification" in archs:
        labels = len(hf.get("id2label") or {}) or hf.get("num_labels", 2)
        if labels != 1:
            raise LmstackError(f"{path}: a BertForSequenceClassification with {labels} labels is a classifier; "
                               "a reward model has one")
        return "encoder", True
    return "encoder", False


def _tokenizer(path: Path) -> Tokenizer:
    if not (path / "tokenizer.json").is_file():
        raise LmstackError(f"{path}: no tokenizer.json beside the model")
    return Tokenizer.load(path)


def start_reward_model(start: str | Path, device: str | torch.device = "cpu"
                       ) -> tuple[nn.Module, Tokenizer, Kind]:
    """(model, tokenizer, kind) that reward training begins from: a reward model folder to continue; a decoder
    (a causal LM folder) with a new score head; or an encoder (any BERT / sentence-transformers folder, e.g.
    all-MiniLM-L6-v2) with a new one-label classification head. Call after seeding torch."""
    path = Path(start)
    kind, trained = folder_kind(path)
    if trained:
        model, tokenizer, kind = load_reward_model(path, device)
        return model, tokenizer, kind
    tokenizer = _tokenizer(path)
    if kind == "decoder":
        DecoderText(tokenizer, 2)  # refuses a tokenizer without a pad token before any weight is read
        model = DecoderForSequenceClassification(load_causal_lm(path, device), 1, tokenizer.pad_id)
    else:
        body, _ = load_encoder(path, head=None, device=device)
        model = EncoderForSequenceClassification(body, num_labels=1)
    return model.to(device), tokenizer, kind


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Tokenizer, Kind]:
    """(model, tokenizer, kind) of a saved reward model folder (ours or a transformers one-label
    ``*ForSequenceClassification``); any other folder is refused in one line."""
    path = Path(path)
    kind, trained = folder_kind(path)
    if not trained:
        raise LmstackError(f"{path}: not a reward model (a one-label *ForSequenceClassification folder); train one "
                           "with lmstack train-reward --model.. or give its out/model")
    tokenizer = _tokenizer(path)
    if kind == "decoder":
        model = load_model(path, device)
        if model.pad_token_id is None:
            model.pad_token_id = tokenizer.pad_id
    else:
        model, _ = load_encoder(path, head="classification", device=device)
    return model.to(device).eval(), tokenizer, kind


def saved_max_len(path: Path, model: nn.Module) -> int:
    """The pair length a reward model was trained with (tokenizer_config.json's model_max_length), at most its
    context."""
    config = path / "tokenizer_config.json"
    saved = read_json(config).get("model_max_length") if config.is_file() else None
    block = model.config.block_size
    return int(min(saved, block)) if isinstance(saved, (int, float)) and saved > 0 else block


def reward_text(path: str | Path, max_len: int | None = None) -> PairText:
    """The ``PairText`` of the model in ``path`` (a starting point or a reward model), read from its config and
    tokenizer before any weight: ``max_len`` (None: the model's context) must fit the context."""
    path = Path(path)
    kind, _ = folder_kind(path)
    block = from_hf_config(read_json(path / "config.json"), str(path / "config.json")).block_size
    if max_len is not None and max_len > block:
        raise LmstackError(f"max_len {max_len} exceeds the context of {path} ({block} tokens)")
    return TEXTS[kind](_tokenizer(path), max_len or block)


def write_reward_files(model: nn.Module, tokenizer: Tokenizer, folder: Path, max_len: int) -> None:
    """A reward model folder's files into ``folder`` (the Hugging Face directory, and the trained pair length)."""
    write_model_files(model, folder, tokenizer)
    write_json(folder / "tokenizer_config.json",
               {**read_json(folder / "tokenizer_config.json"), "model_max_length": max_len})


def save_reward_model(model: nn.Module, tokenizer: Tokenizer, path: str | Path, max_len: int) -> Path:
    """Write the reward model folder atomically."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_reward_files(model, tokenizer, tmp, max_len)
    return path


# ----------------------------------------------------------------------------------------------- scoring

class RewardScorer:
    """Rewards from a reward model: ``score(prompts, replies)`` (chat messages and reply texts) and, for a decoder,
    ``score_ids(sequences)`` (prompt + reply ids in the reward model's own tokenizer). Batched, no gradients."""

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, kind: Kind, max_len: int | None = None,
                 batch_size: int = 16):
        self.model, self.tokenizer, self.kind, self.batch_size = model.eval(), tokenizer, kind, batch_size
        self.max_len = min(max_len or model.config.block_size, model.config.block_size)
        self.text = TEXTS[kind](tokenizer, self.max_len)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 16) -> RewardScorer:
        """The scorer of a saved reward model folder."""
        model, tokenizer, kind = load_reward_model(path, device)
        return cls(model, tokenizer, kind, saved_max_len(Path(path), model), batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def score_rows(self, rows: list[TextPair]) -> torch.Tensor:
        """[N] fp32 rewards of encoded (prompt, reply) rows, on the CPU."""
        out = []
        for lo in range(0, len(rows), self.batch_size):
            inputs = self.text.inputs(rows[lo:lo + self.batch_size])
            out.append(self.model(**{k: v.to(self.device) for k, v in inputs.items()}).squeeze(-1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def score(self, prompts: list[list[dict]], replies: list[str]) -> torch.Tensor:
        """[N]: r(prompts[i], replies[i]); a decoder renders them with the chat template as ``align.data`` does."""
        if len(prompts) != len(replies):
            raise LmstackError(f"{len(prompts)} prompts but {len(replies)} replies to score")
        return self.score_rows([self.text.pair(p, r, f"reply {i}") for i, (p, r) in enumerate(zip(prompts, replies))])

    def score_ids(self, sequences: list[list[int]]) -> torch.Tensor:
        """[N]: rewards of whole token sequences (prompt + reply, in this reward model's tokenizer): a decoder's."""
        if self.kind != "decoder":
            raise LmstackError("score_ids needs a decoder reward model; an encoder scores texts (score)")
        if not all(sequences):
            raise LmstackError("every sequence to score needs at least one token")
        too_long = [len(s) for s in sequences if len(s) > self.model.config.block_size]
        if too_long:
            raise LmstackError(f"a {too_long[0]}-token sequence exceeds the reward model's context of "
                               f"{self.model.config.block_size}")
        return self.score_rows([TextPair(list(s), []) for s in sequences])
