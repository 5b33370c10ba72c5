"""The extension point: a *section* is a generator of documents about the world, registered by name.

A later feature adds its own kind of text (say, tool-use conversations) in its own module::

    @section("tools", docs=800)
    def tools(world: World, rng: random.Random) -> Iterator[dict]:
        while True:
            yield doc("...", kind="tools", lang="en")

and imports that module in ``lmstack/data/synth/__init__.py``. ``docs`` is how many documents the section
contributes at ``--scale 1.0``; sections may yield forever, the generator takes only what it needs.

A *dataset* is task data beside the pretraining text (instructions to tune on, passages and questions to
retrieve and answer), written as ``OUT/{name}_{split}.jsonl``::

    @dataset("sft")
    def sft(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
        return {"train": [...], "test": [...]}
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from collections.abc import Callable, Iterator

from lmstack.data.synth.world import World

SectionFn = Callable[[World, random.Random], Iterator[dict]]


@dataclass(frozen=True)
class Section:
    name: str
    docs: int
    fn: SectionFn


SECTIONS: dict[str, Section] = {}


def section(name: str, docs: int) -> Callable[[SectionFn], SectionFn]:
    """Register ``fn`` as the section ``name`` contributing ``docs`` documents at scale 1.0."""

    def register(fn: SectionFn) -> SectionFn:
        if name in SECTIONS:
            raise ValueError(f"synth section '{name}' is registered twice")
        SECTIONS[name] = Section(name, docs, fn)
        return fn

    return register


DatasetFn = Callable[[World, random.Random, float], dict[str, list[dict]]]
DATASETS: dict[str, DatasetFn] = {}


def dataset(name: str) -> Callable[[DatasetFn], DatasetFn]:
    """Register ``fn`` as the dataset ``name``: it returns records per split, written to ``{name}_{split}.jsonl``."""

    def register(fn: DatasetFn) -> DatasetFn:
        if name in DATASETS:
            raise ValueError(f"synth dataset '{name}' is registered twice")
        DATASETS[name] = fn
        return fn

    return register


def doc(text: str, kind: str, lang: str) -> dict:
    """One pretraining record, in the field order written to pretrain.jsonl."""
    return {"text": text, "kind": kind, "lang": lang}


def held_out(text: str, share: int) -> bool:
    """One text in ``share`` is held out, by a hash of the text (the same text always lands in the same split)."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % share == 0


def fill_splits(sizes: dict[str, int], draw: Callable[[], tuple[str, Callable[[], dict]]], share: int,
                tries: int = 50) -> dict[str, list[dict]]:
    """Unique records drawn until each split ("train", "test") holds its size, or ``tries`` draws per record
    wanted: ``draw()`` gives a record's key text and a function making the record (called once it is kept); the
    key's split is ``held_out(key, share)``."""
    splits: dict[str, list[dict]] = {name: [] for name in sizes}
    seen: set[str] = set()
    for _ in range(tries * sum(sizes.values())):
        if all(len(splits[s]) >= n for s, n in sizes.items()):
            break
        key, make = draw()
        split = "test" if held_out(key, share) else "train"
        if key in seen or len(splits[split]) >= sizes[split]:
            continue
        seen.add(key)
        splits[split].append(make())
    return splits
