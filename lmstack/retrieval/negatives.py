"""Hard negatives for training retrievers: the passages a first-stage index ranks highest for a query that are
not its positive (DPR, Karpukhin et al. 2020, section 3.2: "the top passages returned by BM25 which don't contain
the answer"). They teach a dual or cross encoder the distinctions that in-batch negatives, mostly off-topic, never
ask of it.
"""

from __future__ import annotations

from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.retrieval.index import Retriever
from lmstack.retrieval.pairs import PairExample


def mine_negatives(examples: list[PairExample], index: str | Path, count: int = 3,
                   depth: int = 20) -> list[PairExample]:
    """Each example with up to ``count`` more negatives: the index's top ``depth`` passages for its query,
    best first, skipping the positive (equal text, or one containing the other, as a chunk of it would) and
    negatives it already has."""
    if count < 1 or depth < count:
        raise LmstackError(f"mining needs 1 <= count <= depth, got count {count} and depth {depth}")
    retriever = Retriever.load(index)
    rankings = retriever.search_many([q for q, _, _ in examples], k=depth)
    mined = []
    for (query, positive, negatives), hits in zip(examples, rankings):
        extra: list[str] = []
        for text in (retriever.text(pid) for pid, _ in hits):
            if len(extra) == count:
                break
            if not _same_passage(text, positive) and text not in negatives and text not in extra:
                extra.append(text)
        mined.append(PairExample(query, positive, negatives + extra))
    return mined


def _same_passage(a: str, b: str) -> bool:
    a, b = a.strip(), b.strip()
    return a in b or b in a
