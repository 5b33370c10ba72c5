"""A built-in corpus about a small invented world, in English and Chinese, generated from a seed.

The text is template-made and repetitive on purpose: a tiny model trained for two minutes on two CPU cores
should visibly learn it. Every fact comes from one ``World`` (see world.py), so stories, questions and menus
agree with each other, and the same facts are said in both languages.

Kinds of text are *sections* (see registry.py); to add one, write a module with a ``@section`` function and
import it below. Each section draws from its own random stream, so adding one leaves the others unchanged.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from itertools import islice
from pathlib import Path
from collections.abc import Iterator

from tqdm import tqdm

from lmstack.data.synth import arithmetic, chat, facts, instructions, menu, passages, qa, stories, tools  # noqa: F401  (registers the sections)
from lmstack.data.synth import preferences  # noqa: F401  (registers the preferences and rl_prompts datasets)
from lmstack.data.synth import choice_questions, summaries, translation, word_problems  # noqa: F401  (evaluation datasets)
from lmstack.data.synth import analogies  # noqa: F401  (the analogies dataset: word-vector evaluation)
from lmstack.data.synth import attributes  # noqa: F401  (attribute-labelled texts and neutral prompts: steering)
from lmstack.data.synth.registry import DATASETS, SECTIONS, dataset, doc, section
from lmstack.data.synth.world import World, build_world
from lmstack.errors import LmstackError
from lmstack.io import atomic_open, write_json

__all__ = ["DATASETS", "SECTIONS", "World", "build_world", "dataset", "doc", "generate_documents", "section", "synth"]


def generate_documents(seed: int = 0, scale: float = 1.0) -> Iterator[dict]:
    """Yield ``{"text", "kind", "lang"}`` records from every section, shuffled together deterministically.

    Each step picks a section with probability proportional to the documents it still owes, which spreads
    every kind of text evenly through the file without holding the corpus in memory.
    """
    if not scale > 0:
        raise LmstackError(f"--scale must be a positive number, got {scale}")
    world = build_world(seed)
    owed = {name: max(1, round(s.docs * scale)) for name, s in SECTIONS.items()}
    streams = {name: islice(s.fn(world, random.Random(f"{seed}:{name}")), owed[name]) for name, s in SECTIONS.items()}
    order = random.Random(f"{seed}:order")
    while any(owed.values()):
        name = order.choices(list(owed), weights=list(owed.values()))[0]
        record = next(streams[name], None)
        if record is None:  # a finite section ran out early
            owed[name] = 0
            continue
        owed[name] -= 1
        yield record


def synth(out: Path = Path("runs/synth"), seed: int = 0, scale: float = 1.0) -> dict:
    """Write the built-in bilingual corpus: pretrain.jsonl (text, kind, lang), world.json (the facts) and each
    task dataset as {name}_{split}.jsonl (say sft_train.jsonl and sft_test.jsonl).

    The same seed and scale always give byte-identical files.

    Args:
        out: folder to write pretrain.jsonl and world.json into
        seed: which world to invent and which sentences to draw
        scale: multiplies the number of documents (1.0 is about 3 MB of text)
    """
    start = time.perf_counter()
    out = Path(out)
    kinds: Counter[str] = Counter()
    n_bytes = 0
    with atomic_open(out / "pretrain.jsonl") as f:
        for record in tqdm(generate_documents(seed, scale), desc="synth", unit=" docs", mininterval=1):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            kinds[record["kind"]] += 1
            n_bytes += len(record["text"].encode("utf-8"))
    world = build_world(seed)
    write_json(out / "world.json", world.to_dict())
    datasets = {}
    for name, make in DATASETS.items():
        for split, records in make(world, random.Random(f"{seed}:dataset:{name}"), scale).items():
            with atomic_open(out / f"{name}_{split}.jsonl") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            datasets[f"{name}_{split}"] = len(records)
    return {
        "out": str(out),
        "documents": sum(kinds.values()),
        "text_bytes": n_bytes,
        "kinds": dict(sorted(kinds.items())),
        "datasets": datasets,
        "seconds": round(time.perf_counter() - start, 2),
    }
