"""Questions about the world with answers, and instructions with responses, in English or Chinese."""

from __future__ import annotations

import random
from collections.abc import Iterator

from lmstack.data.synth.facts import PERSON_FACTS, dollars, join, person_fact, place_slots, say
from lmstack.data.synth.registry import doc, section
from lmstack.data.synth.world import World

# question key -> (english, chinese, fact key, fact variant) about a person
PERSON_QUESTIONS = {
    "home": ("Where does {name} live?", "{name}住在哪里？", "home", 0),
    "job": ("What does {name} do for a living?", "{name}是做什么工作的？", "job", 0),
    "age": ("How old is {name}?", "{name}今年多大？", "age", 0),
    "pet": ("Does {name} have a pet?", "{name}养宠物吗？", "pet", 0),
    "hobby": ("What does {name} enjoy doing?", "{name}喜欢做什么？", "hobby", 1),
    "food": ("What is {name}'s favourite food?", "{name}最喜欢吃什么？", "food", 0),
    "friend": ("Who is {name}'s best friend?", "{name}最好的朋友是谁？", "friend", 0),
}
# question key -> ((english, chinese) question, (english, chinese) answer) about a place
PLACE_QUESTIONS = {
    "landmark": (("What is {place} known for?", "{place}以什么闻名？"),
                 ("{place} is known for its {landmark}.", "{place}以{landmark}闻名。")),
    "population": (("How many people live in {place}?", "{place}有多少人？"),
                   ("About {population} people live in {place}.", "{place}大约有{population}人。")),
    "residents": (("Who lives in {place}?", "谁住在{place}？"),
                  ("The people who live in {place} are {residents}.", "住在{place}的人有{residents}。")),
    "restaurant": (("Where can you eat in {place}?", "在{place}可以去哪里吃饭？"),
                   ("You can eat at {restaurant}.", "可以去{restaurant}吃饭。")),
}
QA_FORMAT = {"en": "Question: {q}\nAnswer: {a}", "zh": "问：{q}\n答：{a}"}
INSTRUCTION_FORMAT = {"en": "Instruction: {q}\nResponse: {a}", "zh": "指令：{q}\n回答：{a}"}


def person_question(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    person = rng.choice(world.people)
    en, zh, key, variant = PERSON_QUESTIONS[rng.choice(list(PERSON_QUESTIONS))]
    if key == "pet" and not person.pet:
        key = "nopet"
    question = (en if lang == "en" else zh).format(name=person.name(lang))
    return question, person_fact(world, person, key, lang, named=True, variant=variant)


def place_question(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    place = rng.choice(world.places)
    keys = [k for k in PLACE_QUESTIONS if k != "residents" or world.residents(place)]
    question, answer = PLACE_QUESTIONS[rng.choice(keys)]
    slots = place_slots(world, place, lang)
    return say([question], 0, lang, slots), say([answer], 0, lang, slots)


def price_question(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    r = rng.choice(world.restaurants)
    d = rng.choice(r.dishes)
    if lang == "en":
        return (f"How much does the {d.name.en} cost at {r.name.en}?",
                f"The {d.name.en} at {r.name.en} costs {dollars(d.price)}.")
    return f"{r.name.zh}的{d.name.zh}多少钱？", f"{r.name.zh}的{d.name.zh}{d.price}元。"


@section("qa", docs=4000)
def questions(world: World, rng: random.Random) -> Iterator[dict]:
    """Questions answered with a full sentence that states the fact, as in the facts section."""
    while True:
        lang, r = rng.choice(("en", "zh")), rng.random()
        ask = person_question if r < 0.6 else place_question if r < 0.85 else price_question
        q, a = ask(world, rng, lang)
        yield doc(QA_FORMAT[lang].format(q=q, a=a), "qa", lang)


def translate(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    person = rng.choice(world.people)
    key = rng.choice([k for k in PERSON_FACTS if k != ("nopet" if person.pet else "pet")])
    variant = rng.randrange(2)
    en, zh = (person_fact(world, person, key, x, named=True, variant=variant) for x in ("en", "zh"))
    return (f"Translate into Chinese: {en}", zh) if lang == "en" else (f"把这句话翻译成英文：{zh}", en)


def sort_numbers(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    numbers = rng.sample(range(1, 100), rng.randint(3, 6))
    if lang == "en":
        return (f"Sort these numbers from smallest to largest: {', '.join(map(str, numbers))}.",
                ", ".join(map(str, sorted(numbers))))
    return f"把这些数字从小到大排列：{'、'.join(map(str, numbers))}。", "、".join(map(str, sorted(numbers)))


def describe(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    p = rng.choice(world.people)
    if lang == "en":
        return (f"Describe {p.name('en')} in one sentence.",
                f"{p.name('en')} is a {p.age}-year-old {p.job.en} who lives in {p.home.name.en}.")
    return f"用一句话介绍{p.name('zh')}。", f"{p.name('zh')}是住在{p.home.name.zh}的一名{p.age}岁的{p.job.zh}。"


def list_residents(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    place = rng.choice([p for p in world.places if world.residents(p)])
    names = "\n".join(f"{i}. {p.name(lang)}" for i, p in enumerate(world.residents(place), 1))
    return ((f"List the people who live in {place.name.en}.", names) if lang == "en"
            else (f"列出住在{place.name.zh}的人。", names))


def cheapest(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    r = rng.choice(world.restaurants)
    low = min(d.price for d in r.dishes)
    names = [d.name(lang) for d in r.dishes if d.price == low]
    if lang == "en":
        return (f"Name the cheapest item on the menu of {r.name.en}.",
                f"The cheapest is {join(['the ' + n for n in names], 'en')}, at {dollars(low)}.")
    return f"说出{r.name.zh}菜单上最便宜的东西。", f"最便宜的是{join(names, 'zh')}，{low}元。"


TASKS = [translate, sort_numbers, describe, list_residents, cheapest]


@section("instructions", docs=2400)
def instructions(world: World, rng: random.Random) -> Iterator[dict]:
    """An instruction and the response that follows it; ``lang`` is the language of the instruction."""
    while True:
        lang = rng.choice(("en", "zh"))
        q, a = rng.choice(TASKS)(world, rng, lang)
        yield doc(INSTRUCTION_FORMAT[lang].format(q=q, a=a), "instruction", lang)
