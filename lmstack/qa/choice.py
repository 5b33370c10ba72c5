"""Multiple-choice QA, two ways.

* An encoder with a choice head (Devlin et al. 2019, as for SWAG): each ``[CLS] question [SEP] option [SEP]``
  gets one score, and a softmax over the options is trained with cross-entropy on the right one.
* A decoder scores each option by its log-likelihood as the continuation of the question, averaged over the
  option's tokens so that long options are not penalised for their length (the length-normalised scoring
  of Brown et al. 2020's multiple-choice evaluations).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.data.synth.qa import QA_FORMAT
from lmstack.errors import LmstackError
from lmstack.data.files import read_jsonl
from lmstack.io import atomic_dir, read_json
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.families.bert import load_encoder
from lmstack.model.heads import EncoderForMultipleChoice
from lmstack.model.hf import load_causal_lm, write_model_files
from lmstack.model.scoring import sequence_logprobs
from lmstack.model.transformer import Transformer
from lmstack.qa.squad import CJK, SquadExample, read_squad
from lmstack.retrieval.starting_points import fresh_encoder
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.epochs import EpochObjective, train_epochs


@dataclass
class ChoiceItem:
    question: str
    options: list[str]
    label: int  # index of the right option


def choices_from_examples(examples: list[SquadExample], n_options: int = 4, seed: int = 0) -> list[ChoiceItem]:
    """Multiple-choice items from extractive ones: the gold answer among wrong answers to questions of the
    same language, shuffled (answerable examples only)."""
    rng = random.Random(seed)
    golds = [ex for ex in examples if ex.answers]
    pool: dict[str, list[str]] = {}
    for ex in golds:
        pool.setdefault(ex.lang, []).append(ex.answers[0].text)
    items = []
    for ex in golds:
        right = ex.answers[0].text
        wrong = sorted({a for a in pool[ex.lang] if a != right})
        if len(wrong) < n_options - 1:
            continue
        options = rng.sample(wrong, n_options - 1) + [right]
        rng.shuffle(options)
        items.append(ChoiceItem(ex.question, options, options.index(right)))
    return items


# --------------------------------------------------------------------------------------- decoder scoring
def prompt_and_options(question: str, options: list[str]) -> tuple[str, list[str]]:
    """The corpus's QA format split at the answer: "Question: q\\nAnswer:" + " option" (English), or
    "问：q\\n答：" + "option" (Chinese); the space belongs to the option, as a tokenizer sees it."""
    lang = "zh" if CJK.search(question) else "en"
    prefix = QA_FORMAT[lang].format(q=question, a="")
    space = prefix[len(prefix.rstrip(" ")):]
    return prefix.rstrip(" "), [space + o for o in options]


@torch.no_grad()
def score_options(model: Transformer, tokenizer: Tokenizer, question: str, options: list[str],
                  normalize: bool = True) -> list[float]:
    """Log-likelihood of each option after the question, per option token when ``normalize`` (else summed).
    The best option is the argmax."""
    if not options:
        raise LmstackError("score_options: no options to score")
    prompt, continuations = prompt_and_options(question, options)
    context = tokenizer.encode(prompt, specials=False)
    if not context:
        context = [tokenizer.eos_id if tokenizer.bos_id is None else tokenizer.bos_id]
    rows = [tokenizer.encode(c, specials=False) for c in continuations]
    if any(not r for r in rows):
        raise LmstackError("score_options: an option is empty")
    return sequence_logprobs(model, [context] * len(rows), rows, normalize).tolist()


# ------------------------------------------------------------------------------------------ encoder head
def encode_choices(tokenizer: Tokenizer, items: list[ChoiceItem], max_len: int = 128) -> dict[str, torch.Tensor]:
    """[B, C, T] input_ids / attention_mask / token_type_ids for items with the same number of options C."""
    C = len(items[0].options)
    if any(len(it.options) != C for it in items):
        raise LmstackError("every item in a batch needs the same number of options")
    flat = encode_pairs(tokenizer, [it.question for it in items for _ in it.options],
                        [o for it in items for o in it.options], max_len)
    return {k: v.view(len(items), C, -1) for k, v in flat.items()}


@torch.no_grad()
def predict_choices(model: EncoderForMultipleChoice, tokenizer: Tokenizer, items: list[ChoiceItem],
                    max_len: int = 128, batch_size: int = 32) -> list[int]:
    """The chosen option's index for each item."""
    model.eval()
    out = []
    for i in range(0, len(items), batch_size):
        out += model(**encode_choices(tokenizer, items[i:i + batch_size], max_len)).argmax(-1).tolist()
    return out


class ChoiceCE(EpochObjective):
    """Seeded epochs over choice items: the softmax over each item's C option scores, cross-entropy on the
    right one, ``L = -1/B sum_b log softmax(scores_b)[label_b]`` (Devlin et al. 2019's SWAG recipe)."""

    def __init__(self, tokenizer: Tokenizer, items: list[ChoiceItem], batch_size: int, seed: int, max_len: int):
        super().__init__(items, batch_size, seed)
        self.tokenizer, self.max_len = tokenizer, max_len

    def batch(self, split: str, rng: torch.Generator) -> dict[str, torch.Tensor]:
        items = super().batch(split, rng)
        labels = torch.tensor([it.label for it in items])
        return {**encode_choices(self.tokenizer, items, self.max_len), "labels": labels}

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return len(batch["labels"])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        scores = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return F.cross_entropy(scores, batch["labels"]), {}


def train_choice(model: EncoderForMultipleChoice, tokenizer: Tokenizer, items: list[ChoiceItem], epochs: int = 3,
                 batch_size: int = 16, lr: float = 1e-3, max_len: int = 128, seed: int = 0) -> dict[str, float]:
    """Fine-tune the choice head and encoder on ``ChoiceCE`` (where the model is)."""
    torch.manual_seed(seed)
    run = train_epochs(ChoiceCE(tokenizer, list(items), batch_size, seed, max_len), model, epochs=epochs, lr=lr,
                       seed=seed, desc="train choice")
    return {"steps": run["steps"], "loss_first": run["loss_first"], "loss_last": run["loss_last"],
            "seconds": run["seconds"]}


def accuracy(predicted: list[int], items: list[ChoiceItem]) -> float:
    return sum(p == it.label for p, it in zip(predicted, items)) / max(1, len(items))


# ------------------------------------------------------------------------------------------------ the CLI
def read_choice_items(path: str | Path, n_options: int = 4, seed: int = 0) -> list[ChoiceItem]:
    """Items from a .jsonl of {"question", "options": [...], "label": index of the right one}, or made from
    extractive QA data (a SQuAD/CMRC .json, or lmstack's qa_*.jsonl) by ``choices_from_examples``."""
    path = Path(path)
    first = next((row for _, row in read_jsonl(path)), None) if path.suffix == ".jsonl" else None
    if not isinstance(first, dict) or "options" not in first:
        return choices_from_examples(read_squad(path)[0], n_options, seed)
    items = []
    for where, row in read_jsonl(path):
        row = row if isinstance(row, dict) else {}
        options, label = row.get("options"), row.get("label")
        if not (isinstance(row.get("question"), str) and isinstance(options, list) and len(options) >= 2
                and all(isinstance(o, str) for o in options) and isinstance(label, int) and 0 <= label < len(options)):
            raise LmstackError(f"{where}: expected {{\"question\": str, \"options\": [two or more str], "
                               "\"label\": index of the right option}")
        if len(options) != len(first["options"]):
            raise LmstackError(f"{where}: {len(options)} options, but the first item has {len(first['options'])}; "
                               "every item needs the same number")
        items.append(ChoiceItem(row["question"], options, label))
    return items


def train_multiple_choice(data: Path, out: Path = Path("runs/choice"), encoder: str = "bert-tiny",
                          tokenizer: Path | None = None, epochs: int = 3, batch_size: int = 16, lr: float = 1e-3,
                          max_len: int = 128, seed: int = 0) -> dict:
    """Train an encoder with a multiple-choice head; writes a BertForMultipleChoice folder.

    Args:
        data: .jsonl of {"question", "options", "label"}, or extractive QA data (SQuAD/CMRC .json, lmstack
            qa_*.jsonl) whose answers become options (the gold among three other answers)
        out: folder for the trained model
        encoder: BERT / lmstack mlm folder to start from, or a preset name (then give --tokenizer)
        tokenizer: folder with tokenizer.json, for an encoder built fresh from a preset
        epochs: passes over the items
        batch_size: items per step
        lr: AdamW learning rate
        max_len: tokens per (question, option) pair
        seed: shuffling, initialisation and distractor seed
    """
    items = read_choice_items(data, seed=seed)
    if not items:
        raise LmstackError(f"{data}: no multiple-choice items")
    torch.manual_seed(seed)
    body, tok = fresh_encoder(encoder, tokenizer) or load_encoder(encoder, head=None)
    if tok is None:
        raise LmstackError(f"{encoder}: no tokenizer.json beside the encoder")
    model = EncoderForMultipleChoice(body)
    figures = train_choice(model, tok, items, epochs, batch_size, lr, max_len, seed)
    with atomic_dir(out) as tmp:
        write_model_files(model, tmp, tok)
    return {"out": str(out), "items": len(items), **figures,
            "train_accuracy": accuracy(predict_choices(model, tok, items, max_len), items)}


def choice_eval(data: Path, *, model: Path, normalize: bool = True, max_len: int = 128, seed: int = 0,
                show: int = 3) -> dict:
    """Accuracy on multiple-choice items: a BertForMultipleChoice folder scores with its head, a decoder
    (causal LM folder) by the options' log-likelihood after the question.

    Args:
        data: .jsonl of {"question", "options", "label"}, or extractive QA data (see train-multiple-choice)
        model: model folder (train-multiple-choice output, or a decoder from train / finetune / transformers)
        normalize: decoder scoring per option token (else summed log-likelihood)
        max_len: tokens per (question, option) pair for the choice head
        seed: distractor seed when options are made from extractive data
        show: how many example predictions to include
    """
    items = read_choice_items(data, seed=seed)
    if not items:
        raise LmstackError(f"{data}: no multiple-choice items")
    arch = (read_json(Path(model) / "config.json").get("architectures") or [""])[0]
    if arch == "BertForMultipleChoice":
        net, tok = load_encoder(model, head="multiple-choice")
        predicted, method = predict_choices(net, tok, items, max_len), "choice head"
    else:
        net, tok = load_causal_lm(model).eval(), Tokenizer.load(model)
        best = lambda s: max(range(len(s)), key=s.__getitem__)  # noqa: E731
        predicted = [best(score_options(net, tok, it.question, it.options, normalize)) for it in items]
        method = "log-likelihood" + (" per token" if normalize else "")
    return {"data": str(data), "model": str(model), "method": method, "items": len(items),
            "accuracy": accuracy(predicted, items),
            "examples": [{"question": it.question, "options": it.options, "predicted": it.options[p],
                          "gold": it.options[it.label]} for it, p in zip(items[:show], predicted)]}
