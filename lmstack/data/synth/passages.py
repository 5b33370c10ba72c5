"""Passages about the world with questions whose answers are spans of them: the retrieval and QA data set.

``qa_passages.jsonl`` holds one passage per person, town and restaurant in each language (``id``, ``text``,
``lang``). ``qa_train.jsonl`` / ``qa_test.jsonl`` are SQuAD-like records (Rajpurkar et al. 2016/2018): ``id``,
``lang``, ``passage_id``, ``question``, ``context`` (the passage's text), ``answers`` [{"text", "answer_start"}]
and ``is_impossible``, true where the passage says the fact does not exist (asking a pet's name of someone with
no pets), which is SQuAD v2's unanswerable case. Every answer is the exact substring at ``answer_start``.

Questions are grouped by (passage, fact); whole groups go to the test split, so a held-out question asks
for a fact that no training question asked, in whatever wording.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lmstack.data.synth.facts import LANGS, PERSON_FACTS, PLACE_FACTS, dollars, person_slots, pronouns
from lmstack.data.synth.registry import dataset
from lmstack.data.synth.world import Dish, Person, Place, Restaurant, World

TEST_FRACTION = 0.2
SEP = {"en": " ", "zh": ""}

# fact key -> the slot holding its answer, and the questions asking for it ({name} is the person)
PERSON_QUESTIONS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "home": ("home", [("Where does {name} live?", "{name}住在哪里？"),
                      ("In which town is {name}'s home?", "{name}的家在哪个地方？")]),
    "job": ("job", [("What does {name} do for a living?", "{name}是做什么工作的？"),
                    ("What is {name}'s job?", "{name}的职业是什么？")]),
    "age": ("age", [("How old is {name}?", "{name}今年多大？"), ("What is {name}'s age?", "{name}今年几岁？")]),
    "pet": ("pet", [("What is the name of {name}'s pet?", "{name}的宠物叫什么名字？")]),
    "species": ("species", [("What kind of animal is {name}'s pet?", "{name}养的是什么动物？")]),
    "hobby": ("hobby", [("What does {name} enjoy doing?", "{name}喜欢做什么？"),
                        ("What does {name} like to do in free time?", "{name}空闲时喜欢做什么？")]),
    "food": ("food", [("What is {name}'s favourite food?", "{name}最喜欢吃什么？")]),
    "friend": ("friend", [("Who is {name}'s best friend?", "{name}最好的朋友是谁？"),
                          ("Who is the best friend of {name}?", "谁是{name}最好的朋友？")]),
}
PLACE_QUESTIONS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "kind": ("kind", [("What kind of place is {place}?", "{place}是一个什么样的地方？")]),
    "landmark": ("landmark", [("What is {place} known for?", "{place}以什么闻名？")]),
    "population": ("population", [("How many people live in {place}?", "{place}大约有多少人？")]),
    "restaurant": ("restaurant", [("Which restaurant is in {place}?", "{place}有哪家餐厅？")]),
}
ASKED_SLOTS = {slot for slot, _ in PERSON_QUESTIONS.values()}
RESTAURANT_FACTS = {
    "where": ("{restaurant} is a restaurant in {place}.", "{restaurant}是{place}的一家餐厅。"),
    "price": ("The {dish} costs {price}.", "{dish}的价格是{price}。"),
}
RESTAURANT_QUESTIONS = {
    "where": ("place", [("Where is {restaurant}?", "{restaurant}在哪里？")]),
    "price": ("price", [("How much does the {dish} cost at {restaurant}?", "{restaurant}的{dish}多少钱？")]),
}


@dataclass
class Sentence:
    """One fact sentence, and where each slot's value starts in it (to place answer spans exactly)."""
    text: str
    starts: dict[str, int]


def render(template: str, slots: dict[str, str]) -> Sentence:
    """Fill ``template`` and record the character offset of every slot it uses."""
    text, starts, rest = "", {}, template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        key, _, rest = tail.partition("}")
        text += head
        starts[key] = len(text)
        text += slots[key]
    return Sentence(text + rest, starts)


def passage(sentences: list[Sentence], lang: str) -> tuple[str, list[dict[str, int]]]:
    """Join sentences; return the text and each sentence's slot offsets shifted into the passage."""
    text, offsets = "", []
    for s in sentences:
        if text:
            text += SEP[lang]
        offsets.append({k: len(text) + v for k, v in s.starts.items()})
        text += s.text
    return text, offsets


def person_passage(world: World, person: Person, lang: str, keys: list[str],
                   variants: list[int]) -> tuple[str, dict[str, tuple[str, int]]]:
    """Every fact about ``person`` (the first sentence names them, the rest use pronouns): the text, and
    (value, start) for each slot a question can ask."""
    slots = person_slots(world, person, lang)
    sentences = []
    for i, (key, v) in enumerate(zip(keys, variants)):
        en, zh = PERSON_FACTS[key][v % len(PERSON_FACTS[key])]
        sentences.append(render(en if lang == "en" else zh, slots | pronouns(person, lang, named=i == 0)))
    text, offsets = passage(sentences, lang)
    spans = {}
    for found in offsets:
        for slot, start in found.items():
            if slot == "a_job":  # "a baker": the answer is the job without its article
                slot, start = "job", start + len(slots["a_job"]) - len(slots["job"])
            if slot in ASKED_SLOTS:
                spans.setdefault(slot, (slots[slot], start))
    return text, spans


def price_text(dish: Dish, lang: str) -> str:
    return dollars(dish.price) if lang == "en" else f"{dish.price}元"


def restaurant_sentences(r: Restaurant, lang: str) -> list[Sentence]:
    out = [render(RESTAURANT_FACTS["where"][lang == "zh"], {"restaurant": r.name(lang), "place": r.place.name(lang)})]
    for d in r.dishes:
        out.append(render(RESTAURANT_FACTS["price"][lang == "zh"],
                          {"dish": d.name(lang), "price": price_text(d, lang)}))
    return out


def place_sentences(world: World, place: Place, lang: str) -> tuple[list[Sentence], dict[str, str]]:
    restaurant = next(r for r in world.restaurants if r.place == place)
    slots = {"place": place.name(lang), "kind": place.kind(lang), "landmark": place.landmark(lang),
             "population": str(place.population), "restaurant": restaurant.name(lang)}
    keys = ("kind", "landmark", "population", "restaurant")
    return [render(PLACE_FACTS[k][0][lang == "zh"], slots) for k in keys], slots


def question(qid: str, lang: str, pid: str, q: str, context: str, answer: tuple[str, int] | None) -> dict:
    if answer is not None:
        assert context[answer[1]:answer[1] + len(answer[0])] == answer[0], (context, answer)
    answers = [] if answer is None else [{"text": answer[0], "answer_start": answer[1]}]
    return {"id": qid, "lang": lang, "passage_id": pid, "question": q, "context": context, "answers": answers,
            "is_impossible": answer is None}


def build(world: World, rng: random.Random) -> tuple[list[dict], list[list[dict]]]:
    """All passages, and all questions grouped by (passage, fact)."""
    passages: list[dict] = []
    groups: list[list[dict]] = []

    def add(pid: str, lang: str, text: str, asked: list[tuple[str, list[str], tuple[str, int] | None]]) -> None:
        passages.append({"id": pid, "text": text, "lang": lang})
        for key, texts, answer in asked:
            groups.append([question(f"{pid}-{key}-{i}", lang, pid, q, text, answer) for i, q in enumerate(texts)])

    for i, person in enumerate(world.people):
        keys = ["home", "job", "age", "pet" if person.pet else "nopet", "hobby", "food", "friend"]
        rng.shuffle(keys)
        keys.remove("home")
        keys.insert(0, "home")  # the named sentence first reads naturally: "Mira Castell lives in Bellhaven."
        variants = [rng.randrange(2) for _ in keys]
        for lang in LANGS:
            text, spans = person_passage(world, person, lang, keys, variants)
            name = person.name(lang)
            asked = []
            for key, (slot, templates) in PERSON_QUESTIONS.items():
                qs = [(en if lang == "en" else zh).format(name=name) for en, zh in templates]
                asked.append((key, qs, spans.get(slot)))  # no pet: the pet questions have no answer
            add(f"person-{i:02d}-{lang}", lang, text, asked)
    for i, place in enumerate(world.places):
        for lang in LANGS:
            sentences, slots = place_sentences(world, place, lang)
            text, offsets = passage(sentences, lang)
            asked = []
            for key, (slot, templates) in PLACE_QUESTIONS.items():
                start = next(o[slot] for o in offsets if slot in o)
                qs = [(en if lang == "en" else zh).format(place=slots["place"]) for en, zh in templates]
                asked.append((key, qs, (slots[slot], start)))
            add(f"place-{i:02d}-{lang}", lang, text, asked)
    for i, r in enumerate(world.restaurants):
        for lang in LANGS:
            sentences = restaurant_sentences(r, lang)
            text, offsets = passage(sentences, lang)
            name = r.name(lang)
            where = ("where", [RESTAURANT_QUESTIONS["where"][1][0][lang == "zh"].format(restaurant=name)],
                     (r.place.name(lang), offsets[0]["place"]))
            asked = [where]
            for d, o in zip(r.dishes, offsets[1:]):
                q = RESTAURANT_QUESTIONS["price"][1][0][lang == "zh"].format(dish=d.name(lang), restaurant=name)
                asked.append((f"price-{d.name.en.replace(' ', '_')}", [q], (price_text(d, lang), o["price"])))
            add(f"restaurant-{i:02d}-{lang}", lang, text, asked)
    return passages, groups


@dataset("qa")
def qa(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """Passages, and train/test questions over them; ``scale`` below 1 keeps that fraction of the questions
    (the world has a fixed number of facts, so above 1 every question is already there)."""
    passages, groups = build(world, rng)
    rng.shuffle(groups)
    n_test = max(1, round(len(groups) * TEST_FRACTION))
    keep = min(1.0, scale)
    splits = {}
    for split, part in (("train", groups[n_test:]), ("test", groups[:n_test])):
        records = [q for group in part for q in group]
        splits[split] = records[:max(4, round(len(records) * keep))]
    return {"passages": passages, **splits}
