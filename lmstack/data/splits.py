"""Held-out splits made from the training data itself, when no validation file is given."""

from __future__ import annotations

import random
from typing import TypeVar

from lmstack.errors import LmstackError

T = TypeVar("T")


def hold_out(items: list[T], fraction: float, seed: int, what: str = "record", flag: str = "--val_data"
             ) -> tuple[list[T], list[T]]:
    """(train, held out): a seeded shuffle of ``items`` with ``fraction`` of them (at least one) held out; a list
    too short to leave both sides non-empty is an error naming ``what`` it holds and the ``flag`` to give instead."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n = max(1, round(fraction * len(items)))
    if n >= len(items):
        raise LmstackError(f"{len(items)} {what}(s) cannot be split into training and held-out data; give more "
                           f"data or {flag}")
    return items[n:], items[:n]
