"""Document -> one-sentence summary pairs about the world (the ``summaries`` dataset), for ROUGE evaluation.

A document is a paragraph of facts about a person (always their home, job and age, plus one to three of their pet,
hobby, favourite food and best friend, in a random order; the first sentence names them, the rest say she/he) or a
description of a town. Its summary keeps the facts that identify the subject, in one sentence, the form of the
``describe`` instruction ("Mira Castell is a 34-year-old baker who lives in Bellhaven."; the pet is added when the
document mentions it). Records::

    {"document": str, "summary": str, "lang": "en" | "zh", "kind": "person" | "place"}

Split by a keyed hash of the document (one in ten held out).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from lmstack.data.synth.facts import a, person_fact, place_description
from lmstack.data.synth.instructions import TEST_SHARE
from lmstack.data.synth.registry import dataset, fill_splits
from lmstack.data.synth.world import Person, World

CORE = ("home", "job", "age")
SEP = {"en": " ", "zh": ""}


def person_summary(person: Person, lang: str, with_pet: bool) -> str:
    pet = person.pet if with_pet else None
    if lang == "en":
        tail = f" and has {a(pet.colour.en)} {pet.species.en}" if pet else ""
        return (f"{person.name('en')} is a {person.age}-year-old {person.job.en} who lives in "
                f"{person.home.name.en}{tail}.")
    tail = f"，养了一{pet.measure}{pet.colour.zh}的{pet.species.zh}" if pet else ""
    return f"{person.name('zh')}是住在{person.home.name.zh}的一名{person.age}岁的{person.job.zh}{tail}。"


def person_document(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    person = rng.choice(world.people)
    extra = ["pet" if person.pet else "nopet", "hobby", "food", "friend"]
    keys = list(CORE) + rng.sample(extra, rng.randint(1, 3))
    rng.shuffle(keys)
    text = SEP[lang].join(person_fact(world, person, k, lang, named=i == 0, variant=rng.randrange(2))
                          for i, k in enumerate(keys))
    return text, person_summary(person, lang, with_pet="pet" in keys)


def place_document(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    place = rng.choice(world.places)
    text = place_description(world, place, rng)[lang]
    summary = (f"{place.name.en} is a {place.kind.en} known for its {place.landmark.en}." if lang == "en"
               else f"{place.name.zh}是一座以{place.landmark.zh}闻名的{place.kind.zh}。")
    return text, summary


@dataset("summaries")
def summaries(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """About 800 train / 150 test unique documents at scale 1 (at least 60 / 20), one in six about a town."""
    sizes = {"train": max(60, round(800 * scale)), "test": max(20, round(150 * scale))}

    def draw() -> tuple[str, Callable[[], dict]]:
        lang = rng.choice(("en", "zh"))
        kind = "place" if rng.random() < 1 / 6 else "person"
        document, summary = (place_document if kind == "place" else person_document)(world, rng, lang)
        return document, lambda: {"document": document, "summary": summary, "lang": lang, "kind": kind}

    return fill_splits(sizes, draw, TEST_SHARE)
