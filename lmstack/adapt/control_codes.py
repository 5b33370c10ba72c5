"""Control codes (Keskar et al. 2019, CTRL): fine-tune on attribute texts with a tag in front of each, so that
at generation time the tag in front of a prompt asks for the attribute.

    "<sentiment=positive> " + "I had the tomato soup at Harbour Table. It was delicious. ..."

Each text is a prompt-completion record (the tag the prompt, the loss on the text and eos; ``adapt.data``
encodes the two separately), tuned by ``lmstack finetune``'s one loop. The codes the model learnt are stored
beside its weights in ``control_codes.json`` ({"format": "<{attribute}={label}> ", "codes": {attribute:
[labels]}}), which ``generate --control attribute=label`` reads, refusing a code the model never saw.

With ``--no-tag`` the same command tunes an *expert* for DExperts (Liu et al. 2021): the texts of the chosen
codes, untagged (say only ``sentiment=positive`` for the expert and ``sentiment=negative`` for the anti-expert).
"""

from __future__ import annotations

import json
from pathlib import Path

from lmstack.adapt.finetune import FinetuneConfig, Method, finetune
from lmstack.data.attribute_texts import AttributeText, known_codes, read_attribute_texts
from lmstack.errors import LmstackError
from lmstack.io import atomic_open, read_json, write_json
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.checkpoint import check_run_dir

CONTROL_FILE = "control_codes.json"
TAG_FORMAT = "<{attribute}={label}> "


def control_tag(attribute: str, label: str) -> str:
    """The tag that precedes a text of ``attribute`` = ``label``: ``<sentiment=positive> ``."""
    return TAG_FORMAT.format(attribute=attribute, label=label)


def parse_code(code: str, where: str = "--control") -> tuple[str, str]:
    """``"sentiment=positive"`` -> ("sentiment", "positive")."""
    attribute, sep, label = code.partition("=")
    if not sep or not attribute.strip() or not label.strip():
        raise LmstackError(f"{where} {code!r}: expected attribute=label, e.g. sentiment=positive")
    return attribute.strip(), label.strip()


def read_control_codes(*directories: str | Path | None) -> dict[str, list[str]] | None:
    """attribute -> labels from the first of ``directories`` (an adapter, then its model) holding
    control_codes.json; None when none does."""
    for d in directories:
        if d is not None and (Path(d) / CONTROL_FILE).is_file():
            data = read_json(Path(d) / CONTROL_FILE)
            codes = data.get("codes") if isinstance(data, dict) else None
            if data.get("format") != TAG_FORMAT or not isinstance(codes, dict):
                raise LmstackError(f"{Path(d) / CONTROL_FILE}: expected {{\"format\": {TAG_FORMAT!r}, \"codes\": "
                                   "{attribute: [labels]}}")
            return codes
    return None


def control_prefix(codes: dict[str, list[str]] | None, code: str, where: str = "the model") -> str:
    """The tag for ``code`` (attribute=label) if the model knows it; else one line listing the codes it knows."""
    attribute, label = parse_code(code)
    if codes is None:
        raise LmstackError(f"--control {code}: {where} has no {CONTROL_FILE}; it was not trained with control codes "
                           "(lmstack train-control)")
    if label not in codes.get(attribute, []):
        raise LmstackError(f"--control {code}: unknown control code; {where} knows: {listed(codes)}")
    return control_tag(attribute, label)


def listed(codes: dict[str, list[str]]) -> str:
    """``codes`` as the user types them: "sentiment=negative, sentiment=positive, ..."."""
    return ", ".join(f"{a}={lab}" for a, labels in codes.items() for lab in labels)


def control_ids(tokenizer: Tokenizer, tag: str, prompt: str | list[int]) -> list[int]:
    """The prompt's ids behind the tag's, as training encoded them: encode(tag) + encode(prompt)."""
    ids = tokenizer.encode(prompt, specials=False) if isinstance(prompt, str) else list(prompt)
    return tokenizer.encode(tag, specials=False) + ids


def control_records(rows: list[AttributeText], tag: bool = True) -> list[dict]:
    """Prompt-completion records: the tag (or nothing) as the prompt, the text as the completion."""
    return [{"prompt": control_tag(r.attribute, r.label) if tag else "", "completion": r.text} for r in rows]


def select_rows(rows: list[AttributeText], codes: list[str] | None, where: str) -> list[AttributeText]:
    """The rows of ``codes`` (attribute=label or a bare attribute), all rows when None; an unknown code is an error
    listing the known ones."""
    if not codes:
        return rows
    known = known_codes(rows)
    keep: set[tuple[str, str]] = set()
    for code in codes:
        attribute, _, label = code.partition("=")
        if attribute not in known or (label and label not in known[attribute]):
            raise LmstackError(f"--codes {code}: not in {where}; it has: {listed(known)}")
        keep |= {(attribute, lab) for lab in ([label] if label else known[attribute])}
    return [r for r in rows if (r.attribute, r.label) in keep]


def train_control(data: Path, model: Path = Path("runs/demo/train/model"), out: Path = Path("runs/control"),
                  codes: list[str] | None = None, tag: bool = True, method: Method = "full", max_iters: int = 300,
                  batch_size: int = 16, lr: float = 5e-4, seed: int = 0, resume: bool = False,
                  overwrite: bool = False) -> dict:
    """Fine-tune a model on attribute texts behind control codes (CTRL), or untagged as a DExperts expert;
    writes out/model (full) or out/adapter with control_codes.json beside the weights.

    Args:
        data: .jsonl of {"text", "lang", "attribute", "label"} (synth's attributes_train.jsonl)
        model: the base model directory
        out: run folder (metrics, checkpoint, out/model or out/adapter)
        codes: which texts to tune on: attribute=label or a whole attribute (default: all)
        tag: put each text's control code in front of it (--no-tag: an expert for DExperts, no codes stored)
        method: full or a PEFT method (lora, adapter, prefix, prompt) with finetune's defaults
        max_iters: optimizer steps
        batch_size: texts per step
        lr: peak learning rate
        seed: data order and initialisation seed
        resume: continue OUT's run where it stopped
        overwrite: start afresh although OUT holds an earlier run
    """
    check_run_dir(out, resume, overwrite)
    rows = select_rows(read_attribute_texts(data), codes, str(data))
    if not rows:
        raise LmstackError(f"{data}: no attribute texts")
    records = control_records(rows, tag)
    tagged = Path(out) / "control_data.jsonl"
    with atomic_open(tagged) as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    cfg = FinetuneConfig(model=Path(model), method=method, data=[tagged], format="completion", out=Path(out),
                         max_iters=max_iters, batch_size=batch_size, lr=lr, min_lr=lr / 10, seed=seed,
                         eval_interval=max_iters, checkpoint_interval=max_iters)
    result = finetune(cfg, resume=resume, overwrite=overwrite)
    artefact = Path(out) / ("model" if method == "full" else "adapter")
    learnt = known_codes(rows)
    if tag:
        write_json(artefact / CONTROL_FILE, {"format": TAG_FORMAT, "codes": learnt})
    return {"out": str(out), "artefact": str(artefact), "texts": len(records), "codes": learnt if tag else None,
            "loss": result.get("loss"), "val_loss": result.get("val_loss"), "iters": result.get("iters"),
            "seconds": result.get("wall_s")}
