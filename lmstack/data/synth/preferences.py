"""Preference data about the world (the ``preferences`` dataset), prompts for RL (``rl_prompts``), and ``judge``.

Every prompt asks one thing the world knows (where a person lives, a town's landmark, a dish's price) or one sum,
in English or Chinese; some ask explicitly for the other language ("Answer in Chinese: ...", "请用英文回答：...")
or for their own. The chosen answer is right, in the asked language and polite: a short courtesy the SFT data
never has ("Sure! ...", "好的！..."). Each rejected answer has exactly one flaw, its ``kind``:

- ``wrong_fact``: polite and in the asked language, but about another entity's value (another town, a wrong sum);
- ``rude``: right and in the asked language, but opened by a rude remark ("Ugh. ...", "烦死了。...");
- ``wrong_language``: right and polite, but in the other language (what a model that ignores the request says).

So a model tuned only on ``sft`` answers without the courtesy, and ignores language requests: the share of
held-out prompts whose greedy answer ``judge`` calls ``chosen_kind`` measures what preference tuning adds.
Records (trl form)::

    {"prompt": [{"role": "user", "content": ...}], "chosen": str, "rejected": str, "kind": flaw,
     "lang": language the answer must be in, "prompt_lang": language of the prompt, "task": person|place|price|
     arithmetic, "answer": the expected value in ``lang``, "answer_alt": the same value in the other language,
     "match": "text" | "number" | "last_number"}

``rl_prompts`` records are the same without ``chosen``/``rejected``, with ``kind`` = the task. Both split by a
keyed hash of the prompt text (one in ten held out, as the ``sft`` split), so a held-out prompt of one dataset is
held out in the other too and never seen in training.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from lmstack.data.synth.facts import LANGS, PERSON_FACTS, dollars, person_slots, place_slots, pronouns, say
from lmstack.data.synth.instructions import TEST_SHARE
from lmstack.data.synth.qa import PERSON_QUESTIONS, PLACE_QUESTIONS
from lmstack.data.synth.registry import dataset, fill_splits
from lmstack.data.synth.world import World
from lmstack.errors import LmstackError

KINDS = ("wrong_fact", "rude", "wrong_language")
TASKS = ("person", "place", "price", "arithmetic")
POLITE = {"en": ("Sure! ", "Of course! ", "Happy to help! "), "zh": ("好的！", "当然！", "很乐意帮忙！")}
RUDE = {"en": ("Ugh. ", "Whatever. ", "What a dumb question. "), "zh": ("烦死了。", "这都不知道？", "真是个笨问题。")}
POLITE_MARKERS = tuple(p.strip().casefold() for forms in POLITE.values() for p in forms)
RUDE_MARKERS = ("ugh", "whatever", "dumb question", "烦死了", "这都不知道", "笨问题")  # English ones as whole words
RUDE_MARKER = re.compile("|".join(rf"\b{m}\b" if m.isascii() else m for m in RUDE_MARKERS), re.IGNORECASE)
# ASK[prompt language][answer language]: the request for an answer language
ASK = {"en": {"en": "Answer in English: ", "zh": "Answer in Chinese: "},
       "zh": {"en": "请用英文回答：", "zh": "请用中文回答："}}
PERSON_SLOTS = {"home": ("home",), "job": ("job", "a_job"), "age": ("age",), "food": ("food",),
                "friend": ("friend",), "hobby": ("hobby",)}  # the question keys asked, and the slots they fill
HAN, LATIN, NUMBER = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]"), re.compile(r"[A-Za-z]"), re.compile(r"\d+")


class Fact:
    """One question and how to answer it right or wrong: ``say(lang, wrong)`` is the answer sentence."""

    def __init__(self, task: str, question: dict[str, str], value: dict[str, str], match: str,
                 say: Callable[[str, bool], str]):
        self.task, self.question, self.value, self.match, self.say = task, question, value, match, say


def person_fact(world: World, rng: random.Random) -> Fact:
    person = rng.choice(world.people)
    key = rng.choice(list(PERSON_SLOTS))
    en, zh, fact, variant = PERSON_QUESTIONS[key]
    slots = {lang: person_slots(world, person, lang) | pronouns(person, lang, named=True) for lang in LANGS}
    if key == "age":
        wrong_age = str(person.age + rng.choice([d for d in range(-12, 13) if abs(d) >= 3]))
        wrong = {lang: {"age": wrong_age} for lang in LANGS}
    else:
        others = [p for p in world.people if p is not person and p.first.en != person.friend
                  and all(_distinct(person_slots(world, p, lang)[key], slots[lang][key]) for lang in LANGS)]
        other = rng.choice(others)
        wrong = {lang: {s: person_slots(world, other, lang)[s] for s in PERSON_SLOTS[key]} for lang in LANGS}
    return Fact("person", {"en": en.format(name=person.name("en")), "zh": zh.format(name=person.name("zh"))},
                {lang: slots[lang][key] for lang in LANGS}, "number" if key == "age" else "text",
                lambda lang, bad: say(PERSON_FACTS[fact], variant, lang, slots[lang] | (wrong[lang] if bad else {})))


def place_fact(world: World, rng: random.Random) -> Fact:
    place = rng.choice(world.places)
    key = rng.choice(("landmark", "population", "restaurant"))
    question, answer = PLACE_QUESTIONS[key]
    slots = {lang: place_slots(world, place, lang) for lang in LANGS}
    others = [p for p in world.places if p is not place
              and all(_distinct(place_slots(world, p, lang)[key], slots[lang][key]) for lang in LANGS)]
    other = rng.choice(others)
    wrong = {lang: {key: place_slots(world, other, lang)[key]} for lang in LANGS}
    return Fact("place", {lang: say([question], 0, lang, slots[lang]) for lang in LANGS},
                {lang: slots[lang][key] for lang in LANGS}, "number" if key == "population" else "text",
                lambda lang, bad: say([answer], 0, lang, slots[lang] | (wrong[lang] if bad else {})))


def price_fact(world: World, rng: random.Random) -> Fact:
    r = rng.choice(world.restaurants)
    d = rng.choice(r.dishes)
    wrong = d.price + rng.choice([k for k in range(-4, 6) if k and d.price + k > 0])

    def answer(lang: str, bad: bool) -> str:
        price = wrong if bad else d.price
        return (f"The {d.name.en} at {r.name.en} costs {dollars(price)}." if lang == "en"
                else f"{r.name.zh}的{d.name.zh}{price}元。")
    return Fact("price", {"en": f"How much does the {d.name.en} cost at {r.name.en}?",
                          "zh": f"{r.name.zh}的{d.name.zh}多少钱？"},
                {lang: str(d.price) for lang in LANGS}, "number", answer)


def arithmetic_fact(world: World, rng: random.Random) -> Fact:
    op = rng.choice("+-×")
    a, b = (rng.randint(11, 99), rng.randint(2, 9)) if op == "×" else (rng.randint(10, 99), rng.randint(10, 99))
    a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
    c = a + b if op == "+" else a - b if op == "-" else a * b
    wrong = c + rng.choice([k for k in (-10, -2, -1, 1, 2, 10) if c + k >= 0])

    def answer(lang: str, bad: bool) -> str:
        n = wrong if bad else c
        return f"{a} {op} {b} equals {n}." if lang == "en" else f"{a} {op} {b} 等于 {n}。"
    return Fact("arithmetic", {"en": f"What is {a} {op} {b}?", "zh": f"{a} {op} {b} 等于多少？"},
                {lang: str(c) for lang in LANGS}, "last_number", answer)


FACTS = {"person": person_fact, "place": place_fact, "price": price_fact, "arithmetic": arithmetic_fact}
WEIGHTS = {"person": 4, "place": 2, "price": 2, "arithmetic": 3}


def _distinct(a: str, b: str) -> bool:
    """Neither value is part of the other (so a wrong answer never contains the right one)."""
    a, b = a.casefold(), b.casefold()
    return a not in b and b not in a


def draw_prompt(world: World, rng: random.Random) -> tuple[Fact, dict]:
    """A fact and the prompt asking for it: the prompt's language, and the answer language (half the prompts
    name one: 70% of those the other language)."""
    fact = FACTS[rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]](world, rng)
    prompt_lang = rng.choice(LANGS)
    r = rng.random()
    lang = prompt_lang if r < 0.65 else ("zh" if prompt_lang == "en" else "en")
    ask = ASK[prompt_lang][lang] if r >= 0.5 else ""
    meta = {"lang": lang, "prompt_lang": prompt_lang, "task": fact.task, "answer": fact.value[lang],
            "answer_alt": fact.value[_other(lang)], "match": fact.match}
    return fact, {"prompt": [{"role": "user", "content": ask + fact.question[prompt_lang]}]} | meta


def answers(fact: Fact, lang: str, kind: str, rng: random.Random) -> tuple[str, str]:
    """(chosen, rejected) for ``fact`` asked in ``lang``; the rejected one has exactly the flaw ``kind``."""
    chosen = rng.choice(POLITE[lang]) + fact.say(lang, False)
    if kind == "wrong_fact":
        rejected = rng.choice(POLITE[lang]) + fact.say(lang, True)
    elif kind == "rude":
        rejected = rng.choice(RUDE[lang]) + fact.say(lang, False)
    else:
        rejected = rng.choice(POLITE[_other(lang)]) + fact.say(_other(lang), False)
    return chosen, rejected


def _other(lang: str) -> str:
    return "zh" if lang == "en" else "en"


def _fill(world: World, rng: random.Random, sizes: dict[str, int], make: Callable[[Fact, dict], dict]):
    """Unique prompts drawn until each split holds its size; a prompt's split is ``held_out(its text)``."""
    def draw() -> tuple[str, Callable[[], dict]]:
        fact, record = draw_prompt(world, rng)
        return record["prompt"][0]["content"], lambda: make(fact, record)

    return fill_splits(sizes, draw, TEST_SHARE, tries=20)


@dataset("preferences")
def preferences(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """About 1,500 train / 150 test comparisons at scale 1 (at least 60 / 20), each flaw a third of them."""
    def make(fact: Fact, record: dict) -> dict:
        kind = rng.choice(KINDS)
        chosen, rejected = answers(fact, record["lang"], kind, rng)
        return {"prompt": record.pop("prompt"), "chosen": chosen, "rejected": rejected, "kind": kind} | record
    return _fill(world, rng, {"train": max(60, round(1500 * scale)), "test": max(20, round(150 * scale))}, make)


@dataset("rl_prompts")
def rl_prompts(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """About 1,000 train / 150 test prompts at scale 1 (at least 60 / 20), with what ``judge`` checks."""
    def make(fact: Fact, record: dict) -> dict:
        return {"prompt": record.pop("prompt"), "kind": fact.task} | record
    return _fill(world, rng, {"train": max(60, round(1000 * scale)), "test": max(20, round(150 * scale))}, make)


def script(text: str) -> str | None:
    """"zh" when Han characters outweigh Latin letters (a Han character counts as three letters), "en" when Latin
    letters do, None for text with neither (digits and signs only)."""
    han, latin = len(HAN.findall(text)), len(LATIN.findall(text))
    if not han and not latin:
        return None
    return "zh" if 3 * han >= latin else "en"


def judge(meta: dict, reply: str) -> dict[str, bool]:
    """Rule checks of one ``reply`` against a record's ``meta`` (the fields of a ``preferences`` or ``rl_prompts``
    record other than the prompt and answers):

    - ``correct``: ``match == "last_number"``: the reply's last number is ``answer``; ``"number"``: ``answer`` is
      one of its numbers; ``"text"``: ``answer`` or ``answer_alt`` (the same value in the other language) is in it,
      ignoring case;
    - ``right_language``: ``script(reply) == lang``;
    - ``polite``: a courtesy of ``POLITE`` ("Sure!", "好的！" ...) is in it, and no marker of ``RUDE_MARKERS``
      (English ones as whole words: "though" is not "ugh");
    - ``chosen_kind``: all three.

    Deterministic and pure: the same inputs always give the same verdicts.
    """
    try:
        answer, match, lang = str(meta["answer"]), meta.get("match", "text"), meta["lang"]
    except KeyError as e:
        raise LmstackError(f"judge: the record has no {e.args[0]!r} field (needs 'answer' and 'lang')") from None
    if match not in ("text", "number", "last_number"):
        raise LmstackError(f"judge: unknown match {match!r} (expected text, number or last_number)")
    numbers = NUMBER.findall(reply)
    if match == "last_number":
        correct = bool(numbers) and numbers[-1] == answer
    elif match == "number":
        correct = answer in numbers
    else:
        folded = reply.casefold()
        correct = any(a and str(a).casefold() in folded for a in (answer, meta.get("answer_alt")))
    folded = reply.casefold()
    polite = any(p in folded for p in POLITE_MARKERS) and not RUDE_MARKER.search(reply)
    right_language = script(reply) == lang
    return {"correct": correct, "right_language": right_language, "polite": polite,
            "chosen_kind": correct and right_language and polite}
