"""Training data for retrievers: (query, positive passage, hard negatives) read from a .jsonl file.

One ``{"query": str, "positive": str, "negatives"?: [str]}`` object per line; ``negatives.mine_negatives``
can add more negatives from an index.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from lmstack.errors import LmstackError
from lmstack.data.files import read_jsonl


class PairExample(NamedTuple):
    """A query, the passage that answers it, and passages that do not (hard negatives, possibly none)."""
    query: str
    positive: str
    negatives: list[str]


def read_pair_examples(path: str | Path) -> list[PairExample]:
    """The examples of a .jsonl file of {"query": str, "positive": str, "negatives"?: [str]} objects."""
    path = Path(path)
    examples = []
    for where, row in read_jsonl(path):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("query", "positive")):
            raise LmstackError(f"{where}: expected an object with string fields 'query' and 'positive'")
        negs = row.get("negatives", [])
        if not isinstance(negs, list) or not all(isinstance(x, str) for x in negs):
            raise LmstackError(f"{where}: 'negatives' must be a list of strings")
        examples.append(PairExample(row["query"], row["positive"], negs))
    if not examples:
        raise LmstackError(f"{path}: no examples")
    return examples
