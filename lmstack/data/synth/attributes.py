"""Attribute-labelled text about the world (the ``attributes`` dataset) and neutral prompts to continue
(``steer_prompts``): what controllable generation is trained and judged on (control codes, Keskar et al. 2019;
DExperts, Liu et al. 2021; contrastive decoding, Li et al. 2022).

Three attributes, each text labelled with one of them, in English and Chinese:

- ``sentiment`` (``positive`` | ``negative``): a review of one of the world's dishes ("I had the tomato soup at
  Harbour Table. It was delicious. I loved it.") or of a town ("We spent a day in Kell and saw the salt
  market. The people were warm and welcoming.");
- ``politeness`` (``polite`` | ``rude``): a reply stating one fact of the world, opened and closed politely
  ("Thank you for asking! ... I hope this helps.") or rudely ("Ugh, stop bothering me. ... Now go away.");
- ``topic`` (``food`` | ``place`` | ``person``): one or two plain facts about dishes, towns or people.

Records::

    attributes_{train,test}.jsonl   {"text": str, "lang": "en" | "zh", "attribute": str, "label": str}
    steer_prompts_test.jsonl        {"prompt": str, "lang": "en" | "zh"}

The attribute texts split by a keyed hash of the text (one in ten held out); the neutral prompts (the opening
sentence of a review, no opinion in it) are a test set only, as the DExperts paper's neutral prompts are.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from lmstack.data.synth.instructions import TEST_SHARE
from lmstack.data.synth.registry import dataset, fill_splits
from lmstack.data.synth.world import World

ATTRIBUTES: dict[str, tuple[str, ...]] = {"sentiment": ("negative", "positive"), "politeness": ("polite", "rude"),
                                          "topic": ("food", "person", "place")}
SEP = {"en": " ", "zh": ""}

# sentiment: what a review says after its neutral opening, by label, language and subject
VERDICTS = {
    "dish": {
        "positive": {"en": ("It was delicious.", "The flavour was wonderful.", "Every bite was a delight.",
                            "I loved it.", "The staff were kind and friendly.", "Great value, I will come back soon.",
                            "Absolutely lovely.", "The best meal I have had all year."),
                     "zh": ("味道好极了。", "非常新鲜，热乎乎的。", "每一口都很享受。", "我太喜欢了。",
                            "服务员亲切又热情。", "物美价廉，我一定会再来。", "真是太棒了。",
                            "这是我今年吃过最好的一餐。")},
        "negative": {"en": ("It was cold and bland.", "The flavour was awful.", "Every bite was a disappointment.",
                            "I hated it.", "The staff were rude and slow.", "A waste of money, I will never come back.",
                            "Absolutely terrible.", "The worst meal I have had all year."),
                     "zh": ("又冷又没味道。", "味道糟透了。", "每一口都让人失望。", "我讨厌它。", "服务员又粗鲁又慢。",
                            "浪费钱，我再也不会来了。", "真是太差了。", "这是我今年吃过最差的一餐。")},
    },
    "place": {
        "positive": {"en": ("The streets were clean and beautiful.", "The people were warm and welcoming.",
                            "It was a wonderful trip.", "The view was breathtaking.", "I cannot wait to go back."),
                     "zh": ("街道干净又漂亮。", "这里的人热情好客。", "这是一次美好的旅行。", "风景美极了。",
                            "我真想再去一次。")},
        "negative": {"en": ("The streets were dirty and noisy.", "The people were cold and unfriendly.",
                            "It was a miserable trip.", "The view was dull and grey.", "I never want to go back."),
                     "zh": ("街道又脏又吵。", "这里的人冷漠又不友好。", "这是一次糟糕的旅行。", "风景无聊透了。",
                            "我再也不想去了。")},
    },
}
# politeness: how a reply opens and closes, by label and language
MANNERS = {
    "polite": {"en": (("Thank you for asking!", "Good question, happy to help.", "Of course, my pleasure."),
                      ("Have a lovely day.", "I hope this helps.", "Please ask if you need anything else.")),
               "zh": (("谢谢你的提问！", "好问题，很乐意帮忙。", "当然，不客气。"),
                      ("祝你今天愉快。", "希望这对你有帮助。", "还有需要请随时问我。"))},
    "rude": {"en": (("Ugh, stop bothering me.", "What a stupid question.", "Figure it out yourself next time."),
                    ("Now go away.", "Don't ask me again.", "Leave me alone.")),
             "zh": (("烦死了，别来烦我。", "真是个蠢问题。", "下次自己查去。"),
                    ("快走开。", "别再问我了。", "让我一个人待着。"))},
}


def dish_opening(world: World, rng: random.Random, lang: str) -> str:
    r = rng.choice(world.restaurants)
    d = rng.choice(r.dishes)
    if lang == "en":
        return rng.choice((f"I had the {d.name.en} at {r.name.en}.", f"We ordered the {d.name.en} at {r.name.en} in "
                           f"{r.place.name.en}.", f"Yesterday I tried the {d.name.en} at {r.name.en}."))
    return rng.choice((f"我在{r.name.zh}吃了{d.name.zh}。", f"我们在{r.place.name.zh}的{r.name.zh}点了{d.name.zh}。",
                       f"昨天我在{r.name.zh}尝了{d.name.zh}。"))


def place_opening(world: World, rng: random.Random, lang: str) -> str:
    p = rng.choice(world.places)
    if lang == "en":
        return rng.choice((f"Last week I visited {p.name.en}.", f"We spent a day in {p.name.en} and saw the "
                           f"{p.landmark.en}.", f"I went to {p.name.en} for the weekend."))
    return rng.choice((f"上周我去了{p.name.zh}。", f"我们在{p.name.zh}待了一天，看了{p.landmark.zh}。",
                       f"周末我去了{p.name.zh}。"))


OPENINGS: dict[str, Callable[[World, random.Random, str], str]] = {"dish": dish_opening, "place": place_opening}


def food_fact(world: World, rng: random.Random, lang: str) -> str:
    r = rng.choice(world.restaurants)
    d = rng.choice(r.dishes)
    if lang == "en":
        return rng.choice((f"{r.name.en} serves the {d.name.en} for {d.price} dollars.",
                           f"The {d.name.en} is on the menu at {r.name.en}."))
    return rng.choice((f"{r.name.zh}的{d.name.zh}卖{d.price}元。", f"{r.name.zh}的菜单上有{d.name.zh}。"))


def place_fact(world: World, rng: random.Random, lang: str) -> str:
    p = rng.choice(world.places)
    if lang == "en":
        return rng.choice((f"{p.name.en} is a {p.kind.en} known for its {p.landmark.en}.",
                           f"About {p.population} people live in {p.name.en}."))
    return rng.choice((f"{p.name.zh}是一座以{p.landmark.zh}闻名的{p.kind.zh}。",
                       f"{p.name.zh}大约有{p.population}人。"))


def person_fact(world: World, rng: random.Random, lang: str) -> str:
    p = rng.choice(world.people)
    if lang == "en":
        return rng.choice((f"{p.name('en')} lives in {p.home.name.en} and works as a {p.job.en}.",
                           f"{p.name('en')} is {p.age} years old and likes {p.hobby.en}."))
    return rng.choice((f"{p.name('zh')}住在{p.home.name.zh}，是一名{p.job.zh}。",
                       f"{p.name('zh')}今年{p.age}岁，喜欢{p.hobby.zh}。"))


FACTS: dict[str, Callable[[World, random.Random, str], str]] = {"food": food_fact, "place": place_fact,
                                                                "person": person_fact}


def review(world: World, rng: random.Random, lang: str, label: str) -> str:
    """A neutral opening about a dish or a town, then two different verdicts of ``label``."""
    subject = rng.choice(("dish", "dish", "place"))
    verdicts = rng.sample(VERDICTS[subject][label][lang], 2)
    return SEP[lang].join([OPENINGS[subject](world, rng, lang), *verdicts])


def reply(world: World, rng: random.Random, lang: str, label: str) -> str:
    """A fact of the world, opened and closed with ``label``'s manners."""
    openers, closers = MANNERS[label][lang]
    fact = FACTS[rng.choice(tuple(FACTS))](world, rng, lang)
    return SEP[lang].join([rng.choice(openers), fact, rng.choice(closers)])


def topical(world: World, rng: random.Random, lang: str, label: str) -> str:
    """One or two plain facts about ``label`` (food, place or person)."""
    return SEP[lang].join(FACTS[label](world, rng, lang) for _ in range(rng.randint(1, 2)))


TEXTS: dict[str, Callable[[World, random.Random, str, str], str]] = {"sentiment": review, "politeness": reply,
                                                                     "topic": topical}


@dataset("attributes")
def attributes(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """About 3000 train / 360 test unique texts at scale 1 (at least 180 / 60), the attributes and their labels
    drawn uniformly."""
    sizes = {"train": max(180, round(3000 * scale)), "test": max(60, round(360 * scale))}

    def draw() -> tuple[str, Callable[[], dict]]:
        lang = rng.choice(("en", "zh"))
        attribute = rng.choice(tuple(ATTRIBUTES))
        label = rng.choice(ATTRIBUTES[attribute])
        text = TEXTS[attribute](world, rng, lang, label)
        return text, lambda: {"text": text, "lang": lang, "attribute": attribute, "label": label}

    return fill_splits(sizes, draw, TEST_SHARE)


@dataset("steer_prompts")
def steer_prompts(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """About 40 unique neutral prompts at scale 1 (at least 10), half in each language: review openings."""
    n = max(10, round(40 * scale))
    seen: dict[str, dict] = {}
    for _ in range(50 * n):
        if len(seen) >= n:
            break
        lang = ("en", "zh")[len(seen) % 2]
        prompt = OPENINGS[rng.choice(("dish", "dish", "place"))](world, rng, lang)
        seen.setdefault(prompt, {"prompt": prompt, "lang": lang})
    return {"test": list(seen.values())}
