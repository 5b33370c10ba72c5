"""Parallel English-Chinese sentences about the world (the ``translation`` dataset), for BLEU / chrF evaluation.

Each pair says one or two facts of the world in both languages from the aligned templates of facts.py (so the two
sides carry the same content in the same order): a fact about a person, a place or a dish's price, or two facts
about one person (the second by pronoun). Records::

    {"en": str, "zh": str, "kind": "person" | "place" | "price" | "pair"}

Split by a keyed hash of the English side (one in ten held out), so no test sentence is in the training pairs. The
pretraining corpus states the same facts, so this measures translation of familiar content, not of new text.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from lmstack.data.synth.facts import LANGS, PERSON_FACTS, dollars, person_fact, place_slots, say
from lmstack.data.synth.qa import PLACE_QUESTIONS
from lmstack.data.synth.instructions import TEST_SHARE
from lmstack.data.synth.registry import dataset, fill_splits
from lmstack.data.synth.world import World

PLACE_KEYS = ("landmark", "population", "residents", "restaurant")
SEP = {"en": " ", "zh": ""}


def _person_keys(person) -> list[str]:
    return [k for k in PERSON_FACTS if k != ("nopet" if person.pet else "pet")]


def person_pair(world: World, rng: random.Random) -> dict[str, str]:
    person = rng.choice(world.people)
    key, variant = rng.choice(_person_keys(person)), rng.randrange(2)
    return {lang: person_fact(world, person, key, lang, named=True, variant=variant) for lang in LANGS}


def two_facts(world: World, rng: random.Random) -> dict[str, str]:
    person = rng.choice(world.people)
    keys, variants = rng.sample(_person_keys(person), 2), (rng.randrange(2), rng.randrange(2))
    return {lang: SEP[lang].join(person_fact(world, person, k, lang, named=i == 0, variant=v)
                                 for i, (k, v) in enumerate(zip(keys, variants))) for lang in LANGS}


def place_pair(world: World, rng: random.Random) -> dict[str, str]:
    place = rng.choice(world.places)
    keys = [k for k in PLACE_KEYS if k != "residents" or world.residents(place)]
    _, answer = PLACE_QUESTIONS[rng.choice(keys)]
    return {lang: say([answer], 0, lang, place_slots(world, place, lang)) for lang in LANGS}


def price_pair(world: World, rng: random.Random) -> dict[str, str]:
    r = rng.choice(world.restaurants)
    d = rng.choice(r.dishes)
    return {"en": f"The {d.name.en} at {r.name.en} costs {dollars(d.price)}.",
            "zh": f"{r.name.zh}的{d.name.zh}{d.price}元。"}


KINDS = {"person": (person_pair, 4), "pair": (two_facts, 4), "place": (place_pair, 1), "price": (price_pair, 1)}


@dataset("translation")
def translation(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """About 1,000 train / 200 test unique pairs at scale 1 (at least 60 / 20)."""
    sizes = {"train": max(60, round(1000 * scale)), "test": max(20, round(200 * scale))}
    names, weights = list(KINDS), [w for _, w in KINDS.values()]

    def draw() -> tuple[str, Callable[[], dict]]:
        kind = rng.choices(names, weights=weights)[0]
        pair = KINDS[kind][0](world, rng)
        return pair["en"], lambda: pair | {"kind": kind}

    return fill_splits(sizes, draw, TEST_SHARE)
