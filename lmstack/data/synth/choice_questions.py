"""Multiple-choice questions about the world (the ``choice_questions`` dataset), scored by log-likelihood as
lm-evaluation-harness's multiple_choice tasks are.

Every question the world can answer of these kinds, in English and in Chinese: where a person lives, their job,
age, favourite food, hobby, best friend and pet; what a town is known for and which restaurant it has; which town
has a landmark; what a dish costs. The three distractors are values of the same attribute elsewhere in the world
(other towns, other people's jobs, nearby ages and prices), none equal to the answer. Records::

    {"question": str, "choices": [4 str], "label": index of the right choice, "lang": "en" | "zh", "kind": str}

The choices' order is seeded; the split is by a keyed hash of the question (one in five held out). The set is
the world's whole question pool (about 600), so it does not grow with ``--scale``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from lmstack.data.synth.facts import LANGS, dollars, place_slots
from lmstack.data.synth.registry import dataset, held_out
from lmstack.data.synth.world import FOODS, HOBBIES, JOBS, SPECIES, Person, Term, World

TEST_SHARE = 5
N_CHOICES = 4
# kind -> (english, chinese) question about a person
PERSON = {
    "home": ("Where does {name} live?", "{name}住在哪里？"),
    "job": ("What does {name} do for a living?", "{name}是做什么工作的？"),
    "age": ("How old is {name}?", "{name}今年多大？"),
    "food": ("What is {name}'s favourite food?", "{name}最喜欢吃什么？"),
    "hobby": ("What does {name} enjoy doing?", "{name}喜欢做什么？"),
    "friend": ("Who is {name}'s best friend?", "{name}最好的朋友是谁？"),
    "pet": ("What kind of pet does {name} have?", "{name}养的是什么宠物？"),
}


def _value(world: World, person: Person, kind: str) -> Term:
    if kind == "home":
        return person.home.name
    if kind == "age":
        return Term(str(person.age), f"{person.age}岁")
    if kind == "friend":
        friend = world.person(person.friend)
        return Term(friend.name("en"), friend.name("zh"))
    if kind == "pet":
        return person.pet.species
    return getattr(person, kind)


def _pool(world: World, person: Person, kind: str) -> list[Term]:
    """The distractor pool: values of the attribute in the world, then in the term lists, the answer excluded."""
    if kind == "age":
        return [Term(str(person.age + d), f"{person.age + d}岁") for d in range(-15, 16) if abs(d) >= 3]
    if kind == "friend":
        return [Term(p.name("en"), p.name("zh")) for p in world.people
                if p is not person and p.first.en != person.friend]
    lists = {"home": [p.name for p in world.places], "job": JOBS, "food": FOODS, "hobby": HOBBIES,
             "pet": [s for s, _, _ in SPECIES]}
    seen_first = [_value(world, p, kind) for p in world.people if kind != "pet" or p.pet]
    return list(dict.fromkeys(seen_first + lists[kind]))


def questions(world: World) -> Iterator[tuple[str, dict[str, str], Term, list[Term]]]:
    """(kind, question per language, answer, distractor pool) for every question the world answers."""
    for person in world.people:
        for kind, (en, zh) in PERSON.items():
            if kind == "pet" and not person.pet:
                continue
            answer = _value(world, person, kind)
            pool = [t for t in _pool(world, person, kind) if t.en != answer.en and t.zh != answer.zh]
            yield kind, {"en": en.format(name=person.name("en")), "zh": zh.format(name=person.name("zh"))}, answer, pool
    for place in world.places:
        slots = {lang: place_slots(world, place, lang) for lang in LANGS}
        restaurant = next(r for r in world.restaurants if r.place == place)
        others = [p for p in world.places if p is not place]
        yield ("landmark", {"en": f"What is {slots['en']['place']} known for?",
                            "zh": f"{slots['zh']['place']}以什么闻名？"},
               place.landmark, [p.landmark for p in others])
        yield ("restaurant", {"en": f"Which restaurant is in {place.name.en}?", "zh": f"哪家餐厅在{place.name.zh}？"},
               restaurant.name, [r.name for r in world.restaurants if r is not restaurant])
        yield ("landmark_town", {"en": f"Which town is known for its {place.landmark.en}?",
                                 "zh": f"哪个地方以{place.landmark.zh}闻名？"}, place.name, [p.name for p in others])
    for r in world.restaurants:
        for d in r.dishes:
            prices = [d.price + k for k in range(-4, 6) if k and d.price + k > 0]
            yield ("price", {"en": f"How much does the {d.name.en} cost at {r.name.en}?",
                             "zh": f"{r.name.zh}的{d.name.zh}多少钱？"},
                   Term(dollars(d.price), f"{d.price}元"), [Term(dollars(p), f"{p}元") for p in prices])


@dataset("choice_questions")
def choice_questions(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """Every question of the world in both languages, four choices each; one in five held out."""
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    seen: set[str] = set()
    for kind, question, answer, pool in questions(world):
        for lang in LANGS:
            if question[lang] in seen:
                continue
            seen.add(question[lang])
            choices = [answer] + rng.sample(pool, N_CHOICES - 1)
            rng.shuffle(choices)
            split = "test" if held_out(question[lang], TEST_SHARE) else "train"
            splits[split].append({"question": question[lang], "choices": [c(lang) for c in choices],
                                  "label": choices.index(answer), "lang": lang, "kind": kind})
    return splits
