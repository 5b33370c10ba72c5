"""An attribute classifier: the judge of controllable generation (sentiment, politeness, topic), as the DExperts
paper (Liu et al. 2021, section 3) judges steered text with a sentiment classifier.

An encoder with a sequence-classification head (``[CLS] text [SEP]`` -> tanh pooler -> one logit per label;
Devlin et al. 2019, section 4), trained with cross-entropy on the synthetic world's ``attributes_train.jsonl``
rows of one attribute. Saved as a ``BertForSequenceClassification`` directory whose ``config.json`` names the
labels (``id2label`` / ``label2id``) and the attribute (``attribute``), so ``transformers`` loads it as it is.

    lmstack train-classifier runs/synth/attributes_train.jsonl --attribute sentiment --out runs/clf
    lmstack classify runs/clf --data runs/synth/attributes_test.jsonl      # held-out accuracy
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.data.attribute_texts import AttributeText, read_attribute_texts
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, refuse_existing, write_json
from lmstack.model.encoder_text import encode_pairs
from lmstack.model.families.bert import load_encoder
from lmstack.model.heads import EncoderForSequenceClassification
from lmstack.model.hf import write_model_files
from lmstack.retrieval.starting_points import fresh_encoder
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.epochs import EpochObjective, train_epochs

ARCHITECTURE = "BertForSequenceClassification"


class AttributeCE(EpochObjective):
    """Seeded epochs over labelled texts; cross-entropy of the head's logits z_b [num_labels] on label y_b,
    ``L = -1/B sum_b log softmax(z_b)[y_b]``."""

    def __init__(self, tokenizer: Tokenizer, items: list[tuple[str, int]], batch_size: int, seed: int, max_len: int):
        super().__init__(items, batch_size, seed)
        self.tokenizer, self.max_len = tokenizer, max_len

    def batch(self, split: str, rng: torch.Generator) -> dict[str, torch.Tensor]:
        items = super().batch(split, rng)
        encoded = encode_pairs(self.tokenizer, [t for t, _ in items], max_len=self.max_len)
        return {**encoded, "labels": torch.tensor([y for _, y in items])}

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return len(batch["labels"])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return attribute_loss(model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]),
                              batch["labels"]), {}


def attribute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy -1/B sum_b log softmax(logits_b)[labels_b] of logits [B, C] and labels [B]."""
    return F.cross_entropy(logits.float(), labels)


class AttributeClassifier:
    """A trained classifier directory: ``predict(texts)`` gives each text's label, ``probabilities(texts)``
    [N, num_labels] in ``labels`` order."""

    def __init__(self, model: EncoderForSequenceClassification, tokenizer: Tokenizer, attribute: str,
                 labels: list[str], max_len: int = 128):
        self.model, self.tokenizer, self.attribute, self.labels = model.eval(), tokenizer, attribute, labels
        self.max_len = min(max_len, model.config.block_size)

    @classmethod
    def load(cls, directory: str | Path, max_len: int = 128) -> AttributeClassifier:
        """The classifier ``train-classifier`` wrote; any other kind of directory is refused in one line."""
        path = Path(directory)
        if not (path / "config.json").is_file():
            raise LmstackError(f"{path}: not a classifier directory (no config.json)")
        hf = read_json(path / "config.json")
        arch = (hf.get("architectures") or [None])[0]
        if arch != ARCHITECTURE or not isinstance(hf.get("attribute"), str):
            raise LmstackError(f"{path}: holds a {arch} without an 'attribute' field; expected an attribute "
                               f"classifier ({ARCHITECTURE} from lmstack train-classifier)")
        model, tokenizer = load_encoder(path, head="classification")
        if tokenizer is None:
            raise LmstackError(f"{path}: no tokenizer.json beside the classifier")
        labels = [hf["id2label"][str(i)] for i in range(len(hf["id2label"]))]
        return cls(model, tokenizer, hf["attribute"], labels, max_len)

    @torch.no_grad()
    def probabilities(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        device = next(self.model.parameters()).device
        out = [torch.zeros(0, len(self.labels))]
        for i in range(0, len(texts), batch_size):
            encoded = {k: v.to(device) for k, v in encode_pairs(self.tokenizer, texts[i:i + batch_size],
                                                                max_len=self.max_len).items()}
            out.append(self.model(**encoded).float().softmax(-1).cpu())
        return torch.cat(out)

    def predict(self, texts: list[str], batch_size: int = 64) -> list[str]:
        return [self.labels[i] for i in self.probabilities(texts, batch_size).argmax(-1).tolist()]


def accuracy_report(classifier: AttributeClassifier, rows: list[AttributeText]) -> dict:
    """Accuracy overall, per language and per gold label, of ``classifier`` on ``rows`` (its attribute)."""
    predicted = classifier.predict([r.text for r in rows])
    right = [p == r.label for p, r in zip(predicted, rows)]

    def share(keep: list[bool]) -> float:
        n = sum(keep)
        return round(sum(ok for ok, k in zip(right, keep) if k) / n, 4) if n else float("nan")
    return {"attribute": classifier.attribute, "items": len(rows), "accuracy": share([True] * len(rows)),
            "by_lang": {lang: share([r.lang == lang for r in rows]) for lang in sorted({r.lang for r in rows})},
            "by_label": {lab: share([r.label == lab for r in rows]) for lab in classifier.labels},
            "chance": round(max(Counter(r.label for r in rows).values()) / len(rows), 4) if rows else float("nan")}


def train_classifier(data: Path, out: Path = Path("runs/classifier"), attribute: str = "sentiment",
                     encoder: str = "bert-tiny", tokenizer: Path | None = Path("runs/demo/data"),
                     test_data: Path | None = None, epochs: int = 3, batch_size: int = 32, lr: float = 1e-3,
                     max_len: int = 128, seed: int = 0, overwrite: bool = False) -> dict:
    """Train an attribute classifier (an encoder with a classification head); writes a
    BertForSequenceClassification folder naming its labels and attribute in config.json.

    Args:
        data: .jsonl of {"text", "lang", "attribute", "label"} (synth's attributes_train.jsonl)
        out: folder for the trained classifier
        attribute: which attribute's rows to learn (sentiment, politeness, topic, ...); its labels are the classes
        encoder: BERT / lmstack mlm folder to start from, or a preset name (then give --tokenizer)
        tokenizer: folder with tokenizer.json, for an encoder built fresh from a preset
        test_data: held-out .jsonl of the same form: its accuracy is reported (e.g. attributes_test.jsonl)
        epochs: passes over the texts
        batch_size: texts per step
        lr: AdamW learning rate
        max_len: tokens per text
        seed: shuffling and initialisation seed
        overwrite: replace an earlier classifier at --out
    """
    refuse_existing(out, overwrite)
    rows = read_attribute_texts(data, attribute)
    if not rows:
        known = sorted({r.attribute for r in read_attribute_texts(data)})
        raise LmstackError(f"{data}: no rows with attribute '{attribute}'; the file has: {', '.join(known) or 'none'}")
    labels = sorted({r.label for r in rows})
    if len(labels) < 2:
        raise LmstackError(f"{data}: attribute '{attribute}' has one label ({labels[0]}); a classifier needs two")
    test_rows = read_attribute_texts(test_data, attribute) if test_data is not None else []
    unknown = sorted({r.label for r in test_rows} - set(labels))
    if unknown:
        raise LmstackError(f"{test_data}: labels {unknown} of '{attribute}' are not in {data} ({', '.join(labels)})")
    torch.manual_seed(seed)
    body, tok = fresh_encoder(encoder, tokenizer if not Path(encoder).is_dir() else None) or load_encoder(encoder)
    if tok is None:
        raise LmstackError(f"{encoder}: no tokenizer.json beside the encoder")
    model = EncoderForSequenceClassification(body, num_labels=len(labels))
    index = {lab: i for i, lab in enumerate(labels)}
    objective = AttributeCE(tok, [(r.text, index[r.label]) for r in rows], batch_size, seed, max_len)
    run = train_epochs(objective, model, epochs=epochs, lr=lr, seed=seed, warmup=0.1, desc="train classifier")
    with atomic_dir(out) as tmp:
        write_model_files(model, tmp, tok)
        hf = read_json(tmp / "config.json")
        write_json(tmp / "config.json", {**hf, "id2label": {str(i): lab for i, lab in enumerate(labels)},
                                         "label2id": index, "attribute": attribute})
    classifier = AttributeClassifier(model, tok, attribute, labels, max_len)
    result = {"out": str(out), "attribute": attribute, "labels": labels, "train_items": len(rows),
              "steps": run["steps"], "loss_first": run["loss_first"], "loss_last": run["loss_last"],
              "seconds": run["seconds"]}
    if test_rows:
        result["test"] = accuracy_report(classifier, test_rows)
    return result


def classify(model: Path, data: Path | None = None, text: list[str] | None = None, max_len: int = 128) -> dict:
    """Judge texts with an attribute classifier: held-out accuracy on labelled rows (overall, per language, per
    label) and / or the label of each given text.

    Args:
        model: classifier folder (from lmstack train-classifier)
        data: .jsonl of {"text", "lang", "attribute", "label"} (e.g. attributes_test.jsonl); rows of the
            classifier's attribute are scored
        text: texts to label
        max_len: tokens per text
    """
    if data is None and not text:
        raise LmstackError("give --data (labelled rows to score) or --text (texts to label)")
    classifier = AttributeClassifier.load(model, max_len)
    result: dict = {"model": str(model), "attribute": classifier.attribute, "labels": classifier.labels}
    if data is not None:
        rows = read_attribute_texts(data, classifier.attribute)
        if not rows:
            raise LmstackError(f"{data}: no rows with attribute '{classifier.attribute}'")
        result |= accuracy_report(classifier, rows)
    if text:
        result["predictions"] = [{"text": t, "label": lab} for t, lab in zip(text, classifier.predict(text))]
    return result
