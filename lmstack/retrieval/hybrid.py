"""Reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009): combine rankings by rank alone.

    RRF(d) = sum over rankings r containing d:  1 / (k + rank_r(d))      (ranks from 1; k = 60)

Scores from BM25 and from a dense encoder live on unrelated scales; ranks do not, so fusion needs no tuning.
A passage missing from a ranking adds nothing for it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

K = 60
T = TypeVar("T", bound=Hashable)


def rrf(rankings: Iterable[Sequence[tuple[T, float]]], k: int = K, top: int | None = None) -> list[tuple[T, float]]:
    """Fuse rankings of (item, score), each best first, into one ranking of (item, RRF score).
    Ties keep the order in which items were first seen (the first ranking's order first)."""
    fused: dict[T, float] = {}
    for ranking in rankings:
        for rank, (item, _) in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    ranked = sorted(fused.items(), key=lambda kv: -kv[1])  # stable: first-seen order breaks ties
    return ranked if top is None else ranked[:top]
