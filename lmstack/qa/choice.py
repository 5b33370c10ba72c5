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

import torch
import torch.nn.functional as F

from lmstack.data.synth.qa import QA_FORMAT
from lmstack.data.tokenizer import Tokenizer
from lmstack.errors import LmstackError
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.heads import EncoderForMultipleChoice
from lmstack.model.transformer import Transformer
from lmstack.qa.squad import CJK, Example
from lmstack.train.epochs import fit


@dataclass
class ChoiceItem:
    question: str
    options: list[str]
    label: int  # index of the right option


def choices_from_examples(examples: list[Example], n_options: int = 4, seed: int = 0) -> list[ChoiceItem]:
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
    T = len(context) + max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(context) + len(r)] = torch.tensor(context + r)
    logp = model(ids).float().log_softmax(-1)  # right padding: a causal model never looks at it
    scores = []
    for i, r in enumerate(rows):
        positions = torch.arange(len(context) - 1, len(context) - 1 + len(r))  # logits that predict the option
        total = logp[i, positions, torch.tensor(r)].sum().item()
        scores.append(total / len(r) if normalize else total)
    return scores


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


def train_choice(model: EncoderForMultipleChoice, tokenizer: Tokenizer, items: list[ChoiceItem], epochs: int = 3,
                 batch_size: int = 16, lr: float = 1e-3, max_len: int = 128, seed: int = 0) -> dict[str, float]:
    """Fine-tune the choice head and encoder: cross-entropy of the softmax over each item's option scores."""
    torch.manual_seed(seed)

    def loss_of(batch: list[ChoiceItem]) -> torch.Tensor:
        return F.cross_entropy(model(**encode_choices(tokenizer, batch, max_len)), torch.tensor([it.label for it in batch]))

    run = fit(model, list(items), loss_of, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, desc="train choice")
    return {"steps": run["steps"], "loss_first": run["loss_first"], "loss_last": run["loss_last"],
            "seconds": run["seconds"]}


def accuracy(predicted: list[int], items: list[ChoiceItem]) -> float:
    return sum(p == it.label for p, it in zip(predicted, items)) / max(1, len(items))
