"""Attribute-labelled texts ``{"text", "lang", "attribute", "label"}`` (synth's ``attributes_{split}.jsonl``), read
with file:line errors: what the attribute classifier, control codes and DExperts' experts are trained on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmstack.data.files import read_jsonl
from lmstack.errors import LmstackError


@dataclass(frozen=True)
class AttributeText:
    text: str
    lang: str
    attribute: str
    label: str


def read_attribute_texts(path: str | Path, attribute: str | None = None) -> list[AttributeText]:
    """The rows of a .jsonl, those of ``attribute`` only when it is given; a malformed row is an error naming
    its file:line."""
    rows = []
    for where, row in read_jsonl(path):
        row = row if isinstance(row, dict) else {}
        if not all(isinstance(row.get(k), str) and row.get(k) for k in ("text", "attribute", "label")):
            raise LmstackError(f"{where}: expected {{\"text\": str, \"lang\": str, \"attribute\": str, \"label\": str}}"
                               " with non-empty text, attribute and label")
        if attribute is None or row["attribute"] == attribute:
            rows.append(AttributeText(row["text"], str(row.get("lang", "")), row["attribute"], row["label"]))
    return rows


def known_codes(rows: list[AttributeText]) -> dict[str, list[str]]:
    """attribute -> its sorted labels, over ``rows``."""
    codes: dict[str, set[str]] = {}
    for r in rows:
        codes.setdefault(r.attribute, set()).add(r.label)
    return {a: sorted(labels) for a, labels in sorted(codes.items())}
