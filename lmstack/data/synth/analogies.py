"""Word analogies about the world (the ``analogies`` dataset): a : b :: c : d questions whose relations the corpus
states, so that a model trained on it has something to get right, in Mikolov's sections-of-questions form.

Each section is one relation, a list of (x, y) pairs that hold in this world; a question joins two pairs
(x1, y1, x2, y2) with x1 != x2 and y1 != y2 (an answer equal to a query word could never be given). Sections::

    person-home, person-home-zh        Mira Castell : Bellhaven :: Tomas Brand : Redcliff (where people live)
    person-job, person-job-zh          Mira Castell : baker :: ...
    restaurant-town, restaurant-town-zh The Copper Kettle : Fernvale :: ...
    town-landmark, town-landmark-zh    Bellhaven : lighthouse :: ...
    dish-price, dish-price-zh          tomato soup : 5 :: ... (dishes with one price in every restaurant)
    name-en-zh, town-en-zh, dish-en-zh Mira : 米拉 :: Tomas : 托马斯 (English : Chinese names)

Records (only a test split: analogies are for evaluation): ``{"section", "a", "b", "c", "d", "lang"}``
(lang "en", "zh" or "en-zh"); words may hold spaces. ``lmstack inspect analogies`` reads the file as is, and
``lmstack.interpret.analogies.write_questions`` exports it as questions-words.txt text.
"""

from __future__ import annotations

import random
from itertools import permutations

from lmstack.data.synth.registry import dataset
from lmstack.data.synth.world import Term, World

PER_SECTION = 100  # questions per section at scale 1 (at least 10), fewer where a relation has fewer pairs


def relations(world: World) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Section name -> (lang, the relation's (x, y) pairs), in a fixed order."""
    prices: dict[Term, set[int]] = {}
    for r in world.restaurants:
        for d in r.dishes:
            prices.setdefault(d.name, set()).add(d.price)
    fixed = [(dish, next(iter(p))) for dish, p in prices.items() if len(p) == 1]
    sections = {}
    for lang in ("en", "zh"):
        tag = "" if lang == "en" else "-zh"
        sections[f"person-home{tag}"] = (lang, [(p.name(lang), p.home.name(lang)) for p in world.people])
        sections[f"person-job{tag}"] = (lang, [(p.name(lang), p.job(lang)) for p in world.people])
        sections[f"restaurant-town{tag}"] = (lang, [(r.name(lang), r.place.name(lang)) for r in world.restaurants])
        sections[f"town-landmark{tag}"] = (lang, [(t.name(lang), t.landmark(lang)) for t in world.places])
        sections[f"dish-price{tag}"] = (lang, [(d(lang), str(price)) for d, price in fixed])
    sections["name-en-zh"] = ("en-zh", [(p.first.en, p.first.zh) for p in world.people])
    sections["town-en-zh"] = ("en-zh", [(t.name.en, t.name.zh) for t in world.places])
    sections["dish-en-zh"] = ("en-zh", list(dict.fromkeys((d.en, d.zh) for d in prices)))
    return sections


@dataset("analogies")
def analogies(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """Up to 100 questions per section at scale 1 (at least 10), drawn without repeats."""
    n = max(10, round(PER_SECTION * scale))
    records = []
    for name, (lang, pairs) in relations(world).items():
        candidates = [(x1, y1, x2, y2) for (x1, y1), (x2, y2) in permutations(pairs, 2) if x1 != x2 and y1 != y2]
        for a, b, c, d in rng.sample(candidates, min(n, len(candidates))):
            records.append({"section": name, "a": a, "b": b, "c": c, "d": d, "lang": lang})
    return {"test": records}
