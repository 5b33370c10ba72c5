"""Input -> output pairs for sequence-to-sequence fine-tuning (translation, summarisation, question answering).

A ``.jsonl`` (or ``.json`` list) of records, each either ``{"input", "output"}`` strings or an alpaca record
(``instruction``, optional ``input`` appended after a blank line, ``output``), as ``data.conversations`` reads
alpaca. A record without its input or output is refused as ``file:line: ...``.
"""

from __future__ import annotations

from pathlib import Path

from lmstack.data.conversations import records
from lmstack.errors import LmstackError


def to_pair(record: object) -> tuple[str, str]:
    """One record -> (input, output); alpaca's instruction (+ input) is the input."""
    if not isinstance(record, dict):
        raise LmstackError("expected a JSON object")
    if "instruction" in record:  # alpaca
        if not isinstance(record["instruction"], str) or not isinstance(record.get("output"), str):
            raise LmstackError("an alpaca record needs string 'instruction' and 'output' fields")
        extra = record.get("input")
        return record["instruction"] + (f"\n\n{extra}" if isinstance(extra, str) and extra else ""), record["output"]
    for key in ("input", "output"):
        if not isinstance(record.get(key), str):
            state = "missing" if key not in record else "not a string"
            raise LmstackError(f"a seq2seq record needs string 'input' and 'output' fields (or alpaca's "
                               f"'instruction' + 'output'); '{key}' is {state}")
    return record["input"], record["output"]


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Every record of ``path`` as (input, output), with ``file:line`` errors; an empty file is refused."""
    path = Path(path)
    out = []
    for where, record in records(path):
        try:
            out.append(to_pair(record))
        except LmstackError as e:
            raise LmstackError(f"{where}: {e}") from None
    if not out:
        raise LmstackError(f"{path}: no records")
    return out
