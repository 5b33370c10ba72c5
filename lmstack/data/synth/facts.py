"""Facts about people and places, each rendered in English and in Chinese with the same content and order."""

from __future__ import annotations

import random
from collections.abc import Iterator

from lmstack.data.synth.registry import doc, section
from lmstack.data.synth.world import Person, Place, World

LANGS = ("en", "zh")

# key -> [(english, chinese), ...]: the variants of one fact, aligned so variant i says the same in both.
# {S}/{s} is the subject (a name or a pronoun), {P}/{p} its possessive; upper case starts a sentence.
PERSON_FACTS = {
    "home": [("{S} lives in {home}.", "{S}住在{home}。"), ("{P} home is in {home}.", "{P}家在{home}。")],
    "job": [("{S} works as {a_job}.", "{S}是一名{job}。"), ("{S} is {a_job} by trade.", "{S}的职业是{job}。")],
    "age": [("{S} is {age} years old.", "{S}今年{age}岁。")],
    "pet": [
        ("{P} pet is {a_colour} {species} named {pet}.", "{P}宠物是一{measure}{colour}的{species}，名叫{pet}。"),
        ("{S} has {a_colour} {species} called {pet}.", "{S}养了一{measure}{colour}的{species}，叫{pet}。"),
    ],
    "nopet": [("{S} has no pets.", "{S}没有养宠物。")],
    "hobby": [("In {p} free time, {s} likes {hobby}.", "{S}空闲时喜欢{hobby}。"),
              ("{S} enjoys {hobby}.", "{S}很喜欢{hobby}。")],
    "food": [("{P} favourite food is {food}.", "{S}最喜欢吃{food}。")],
    "friend": [("{P} best friend is {friend}.", "{S}最好的朋友是{friend}。")],
}
PLACE_FACTS = {
    "kind": [("{place} is a {kind}.", "{place}是一座{kind}。")],
    "landmark": [("It is known for its {landmark}.", "那里以{landmark}闻名。")],
    "population": [("About {population} people live there.", "大约有{population}人住在那里。")],
    "residents": [("The people who live in {place} are {residents}.", "住在{place}的人有{residents}。")],
    "restaurant": [("{restaurant} is a restaurant in {place}.", "{restaurant}是{place}的一家餐厅。")],
}


def a(word: str) -> str:
    """English indefinite article: "a baker", "an engineer"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def dollars(n: int) -> str:
    return f"{n} dollar" if n == 1 else f"{n} dollars"


def join(items: list[str], lang: str) -> str:
    """"A, B and C" / "A、B和C"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}" if lang == "en" else f"{'、'.join(items[:-1])}和{items[-1]}"


def pronouns(person: Person, lang: str, named: bool) -> dict[str, str]:
    """The subject and possessive slots: the full name when ``named``, else she/he."""
    if lang == "zh":
        s = person.name("zh") if named else ("她" if person.female else "他")
        return {"S": s, "s": s, "P": s + "的", "p": s + "的"}
    if named:
        name = person.name("en")
        return {"S": name, "s": name, "P": name + "'s", "p": name + "'s"}
    s, p = ("she", "her") if person.female else ("he", "his")
    return {"S": s.capitalize(), "s": s, "P": p.capitalize(), "p": p}


def person_slots(world: World, person: Person, lang: str) -> dict[str, str]:
    """Every value a person fact can mention, in ``lang``."""
    slots = {
        "home": person.home.name(lang),
        "job": person.job(lang),
        "a_job": a(person.job.en),
        "age": str(person.age),
        "hobby": person.hobby(lang),
        "food": person.food(lang),
        "friend": world.person(person.friend).name(lang),
    }
    if person.pet:
        pet = person.pet
        colour = pet.colour(lang)
        slots |= {"pet": pet.name(lang), "species": pet.species(lang), "colour": colour, "a_colour": a(colour),
                  "measure": pet.measure}
    return slots


def say(templates: list[tuple[str, str]], variant: int, lang: str, slots: dict[str, str]) -> str:
    en, zh = templates[variant % len(templates)]
    return (en if lang == "en" else zh).format(**slots)


def person_fact(world: World, person: Person, key: str, lang: str, named: bool = True, variant: int = 0) -> str:
    """One sentence about ``person``: ``person_fact(w, p, "home", "zh")`` -> "米拉·卡斯特住在贝尔港。"."""
    slots = person_slots(world, person, lang) | pronouns(person, lang, named)
    return say(PERSON_FACTS[key], variant, lang, slots)


def bio(world: World, person: Person, rng: random.Random) -> dict[str, str]:
    """A few facts about ``person`` in a random order, as {"en": ..., "zh": ...} saying the same thing."""
    keys = ["job", "age", "pet" if person.pet else "nopet", "hobby", "food", "friend"]
    keys = ["home"] + rng.sample(keys, rng.randint(3, len(keys)))
    rng.shuffle(keys)
    variants = [rng.randrange(2) for _ in keys]
    sep = {"en": " ", "zh": ""}
    return {
        lang: sep[lang].join(person_fact(world, person, k, lang, named=i == 0, variant=v)
                             for i, (k, v) in enumerate(zip(keys, variants)))
        for lang in LANGS
    }


def place_slots(world: World, place: Place, lang: str) -> dict[str, str]:
    restaurant = next(r for r in world.restaurants if r.place == place)
    return {
        "place": place.name(lang),
        "kind": place.kind(lang),
        "landmark": place.landmark(lang),
        "population": str(place.population),
        "residents": join([p.name(lang) for p in world.residents(place)], lang),
        "restaurant": restaurant.name(lang),
    }


def place_description(world: World, place: Place, rng: random.Random) -> dict[str, str]:
    """A town's kind, landmark, population, residents and restaurant, in both languages."""
    extra = ["restaurant"] + (["residents"] if world.residents(place) else [])
    keys = ["kind", "landmark", "population"] + rng.sample(extra, rng.randint(1, len(extra)))
    sep = {"en": " ", "zh": ""}
    return {
        lang: sep[lang].join(say(PLACE_FACTS[k], 0, lang, place_slots(world, place, lang)) for k in keys)
        for lang in LANGS
    }


@section("facts", docs=3600)
def facts(world: World, rng: random.Random) -> Iterator[dict]:
    """Biographies of people and descriptions of towns; each one is yielded in English, then in Chinese."""
    while True:
        if rng.random() < 0.2:
            texts = place_description(world, rng.choice(world.places), rng)
        else:
            texts = bio(world, rng.choice(world.people), rng)
        for lang in LANGS:
            yield doc(texts[lang], "facts", lang)
