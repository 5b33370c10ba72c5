"""Multi-step arithmetic word problems about the world (the ``word_problems`` dataset), for chain-of-thought
evaluation as GSM8K (Cobbe et al. 2021) and Wei et al. (2022) use it.

A person of the world buys, gives away and orders at a restaurant of the world (whose prices are stated in the
question, so it is arithmetic, not recall). A problem takes 1, 2 or 3 steps (a third each); its worked
``solution`` states one equation per step and ends "The answer is N." ("答案是 N。"), as the CoT exemplars of
Wei et al. do. Records::

    {"question", "solution": worked steps ending "The answer is N.", "answer": the steps one per line then
     "#### N" (GSM8K's form), "direct": "The answer is N." (the direct-answer version), "target": "N",
     "steps": 1 | 2 | 3, "kind": the template, "lang": "en" | "zh",
     "messages": [user question, assistant solution] (OpenAI form: ``lmstack finetune`` reads it as is)}

The split is by a keyed hash of the question text (one in ten held out, as ``sft``), so no test question is
seen in training.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from lmstack.data.synth.arithmetic import ITEMS
from lmstack.data.synth.facts import LANGS, pronouns
from lmstack.data.synth.instructions import TEST_SHARE
from lmstack.data.synth.registry import dataset, fill_splits
from lmstack.data.synth.world import Dish, Person, Restaurant, Term, World

FINAL = {"en": "The answer is {n}.", "zh": "答案是 {n}。"}
END = {"en": ".", "zh": "。"}
SEP = {"en": " ", "zh": ""}


@dataclass(frozen=True)
class Step:
    """One equation ``expr = value`` and the sentence that states it ("{eq}" is where the equation goes)."""

    expr: str
    value: int
    say: dict[str, str]

    def sentence(self, lang: str) -> str:
        return self.say[lang].format(eq=f"{self.expr} = {self.value}") + END[lang]


@dataclass(frozen=True)
class Problem:
    kind: str
    question: dict[str, str]
    steps: tuple[Step, ...]

    @property
    def answer(self) -> int:
        return self.steps[-1].value

    def solution(self, lang: str) -> str:
        return SEP[lang].join([s.sentence(lang) for s in self.steps] + [FINAL[lang].format(n=self.answer)])

    def gsm8k_answer(self, lang: str) -> str:
        return "\n".join(s.sentence(lang) for s in self.steps) + f"\n#### {self.answer}"


class _Who:
    """A person's name and pronouns in both languages, and the best friend's name."""

    def __init__(self, world: World, person: Person):
        self.name = {lang: person.name(lang) for lang in LANGS}
        self.friend = {lang: world.person(person.friend).name(lang) for lang in LANGS}
        p = {lang: pronouns(person, lang, named=False) for lang in LANGS}
        self.S, self.s = p["en"]["S"], p["en"]["s"]
        self.zh = p["zh"]["s"]


def _people_item(world: World, rng: random.Random) -> tuple[_Who, Term, str]:
    item, measure = rng.choice(ITEMS)
    return _Who(world, rng.choice(world.people)), item, measure


def _order(world: World, rng: random.Random, n_dishes: int) -> tuple[_Who, Restaurant, list[tuple[Dish, int]]]:
    r = rng.choice(world.restaurants)
    dishes = rng.sample([d for d in r.dishes if d.course != "drink"], n_dishes)
    return _Who(world, rng.choice(world.people)), r, [(d, rng.randint(2, 6)) for d in dishes]


def _cost(d: Dish, lang: str) -> str:
    return f"{d.plural} cost {d.price} dollars each" if lang == "en" else f"{d.name.zh}每份{d.price}元"


def _orders(order: list[tuple[Dish, int]], lang: str) -> str:
    if lang == "en":
        return " and ".join(f"{n} {d.plural}" for d, n in order)
    return "和".join(f"{n}份{d.name.zh}" for d, n in order)


def _dish_step(d: Dish, n: int) -> Step:
    return Step(f"{n} × {d.price}", n * d.price, {"en": f"{n} {d.plural} cost {{eq}} dollars",
                                                   "zh": f"{n}份{d.name.zh}：{{eq}}元"})


def _note(total: int, rng: random.Random) -> int:
    return min(n for n in (10, 20, 50, 100, 200) if n > total) + rng.choice((0, 0, 10))


# ---- one step ------------------------------------------------------------------------------------------------
def buy(world: World, rng: random.Random) -> Problem:
    w, it, m = _people_item(world, rng)
    a, b = rng.randint(5, 60), rng.randint(2, 40)
    return Problem("buy", {
        "en": f"{w.name['en']} has {a} {it.en}. {w.S} buys {b} more. How many {it.en} does {w.s} have now?",
        "zh": f"{w.name['zh']}有{a}{m}{it.zh}，又买了{b}{m}。{w.zh}现在有多少{m}{it.zh}？"},
        (Step(f"{a} + {b}", a + b, {"en": f"{w.S} starts with {a} {it.en} and buys {b} more, so {w.s} has {{eq}}",
                                    "zh": f"{w.zh}原来有{a}{m}，又买了{b}{m}，所以{w.zh}有{{eq}}{m}"}),))


def give(world: World, rng: random.Random) -> Problem:
    w, it, m = _people_item(world, rng)
    b = rng.randint(2, 40)
    a = b + rng.randint(3, 50)
    return Problem("give", {
        "en": f"{w.name['en']} has {a} {it.en} and gives {b} to {w.friend['en']}. "
              f"How many {it.en} does {w.s} have left?",
        "zh": f"{w.name['zh']}有{a}{m}{it.zh}，送给{w.friend['zh']}{b}{m}。{w.zh}还剩多少{m}{it.zh}？"},
        (Step(f"{a} - {b}", a - b, {"en": f"{w.S} gives away {b} of {a} {it.en}, so {{eq}} are left",
                                    "zh": f"{a}{m}送出{b}{m}，还剩{{eq}}{m}"}),))


def boxes(world: World, rng: random.Random) -> Problem:
    w, it, m = _people_item(world, rng)
    n, k = rng.randint(2, 9), rng.randint(3, 12)
    return Problem("boxes", {
        "en": f"{w.name['en']} buys {n} boxes of {it.en}. Each box holds {k} {it.en}. "
              f"How many {it.en} does {w.s} buy?",
        "zh": f"{w.name['zh']}买了{n}盒{it.zh}，每盒有{k}{m}。{w.zh}一共买了多少{m}{it.zh}？"},
        (Step(f"{n} × {k}", n * k, {"en": f"{n} boxes of {k} {it.en} make {{eq}} {it.en}",
                                    "zh": f"{n}盒，每盒{k}{m}：{{eq}}{m}"}),))


def order_one(world: World, rng: random.Random) -> Problem:
    w, r, [(d, n)] = _order(world, rng, 1)
    return Problem("order_one", {
        "en": f"At {r.name.en}, {_cost(d, 'en')}. {w.name['en']} orders {_orders([(d, n)], 'en')}. "
              f"How many dollars does {w.s} pay?",
        "zh": f"在{r.name.zh}，{_cost(d, 'zh')}。{w.name['zh']}点了{_orders([(d, n)], 'zh')}。{w.zh}要付多少元？"},
        (_dish_step(d, n),))


# ---- two steps -----------------------------------------------------------------------------------------------
def buy_give(world: World, rng: random.Random) -> Problem:
    w, it, m = _people_item(world, rng)
    a, b = rng.randint(5, 60), rng.randint(2, 40)
    c = rng.randint(2, a + b - 1)
    return Problem("buy_give", {
        "en": f"{w.name['en']} has {a} {it.en}. {w.S} buys {b} more and then gives {c} to {w.friend['en']}. "
              f"How many {it.en} does {w.s} have left?",
        "zh": f"{w.name['zh']}有{a}{m}{it.zh}，又买了{b}{m}，然后送给{w.friend['zh']}{c}{m}。"
              f"{w.zh}还剩多少{m}{it.zh}？"},
        (Step(f"{a} + {b}", a + b, {"en": f"After buying, {w.s} has {{eq}} {it.en}",
                                    "zh": f"买完以后有{{eq}}{m}"}),
         Step(f"{a + b} - {c}", a + b - c, {"en": f"After giving {c} away, {w.s} has {{eq}} left",
                                            "zh": f"送出{c}{m}以后还剩{{eq}}{m}"})))


def start_boxes(world: World, rng: random.Random) -> Problem:
    w, it, m = _people_item(world, rng)
    a, n, k = rng.randint(2, 40), rng.randint(2, 9), rng.randint(3, 12)
    return Problem("start_boxes", {
        "en": f"{w.name['en']} has {a} {it.en}. {w.S} buys {n} boxes with {k} {it.en} in each box. "
              f"How many {it.en} does {w.s} have now?",
        "zh": f"{w.name['zh']}有{a}{m}{it.zh}，又买了{n}盒，每盒{k}{m}。{w.zh}现在有多少{m}{it.zh}？"},
        (Step(f"{n} × {k}", n * k, {"en": f"The boxes hold {{eq}} {it.en}", "zh": f"这些盒子里有{{eq}}{m}"}),
         Step(f"{a} + {n * k}", a + n * k, {"en": f"With the {a} {w.s} had, {w.s} has {{eq}}",
                                             "zh": f"加上原来的{a}{m}，一共{{eq}}{m}"})))


def order_change(world: World, rng: random.Random) -> Problem:
    w, r, [(d, n)] = _order(world, rng, 1)
    total = n * d.price
    note = _note(total, rng)
    return Problem("order_change", {
        "en": f"At {r.name.en}, {_cost(d, 'en')}. {w.name['en']} orders {_orders([(d, n)], 'en')} and pays with "
              f"{note} dollars. How many dollars of change does {w.s} get?",
        "zh": f"在{r.name.zh}，{_cost(d, 'zh')}。{w.name['zh']}点了{_orders([(d, n)], 'zh')}，付了{note}元。"
              f"应该找{w.zh}多少元？"},
        (_dish_step(d, n),
         Step(f"{note} - {total}", note - total, {"en": "The change is {eq} dollars", "zh": "找零{eq}元"})))


# ---- three steps ---------------------------------------------------------------------------------------------
def order_two(world: World, rng: random.Random) -> Problem:
    w, r, order = _order(world, rng, 2)
    (d1, n1), (d2, n2) = order
    t1, t2 = n1 * d1.price, n2 * d2.price
    return Problem("order_two", {
        "en": f"At {r.name.en}, {_cost(d1, 'en')} and {_cost(d2, 'en')}. {w.name['en']} orders "
              f"{_orders(order, 'en')}. How many dollars does {w.s} pay in total?",
        "zh": f"在{r.name.zh}，{_cost(d1, 'zh')}，{_cost(d2, 'zh')}。{w.name['zh']}点了{_orders(order, 'zh')}。"
              f"{w.zh}一共要付多少元？"},
        (_dish_step(d1, n1), _dish_step(d2, n2),
         Step(f"{t1} + {t2}", t1 + t2, {"en": "Together that is {eq} dollars", "zh": "一共{eq}元"})))


def boxes_give(world: World, rng: random.Random) -> Problem:
    w, it, m = _people_item(world, rng)
    a, n, k = rng.randint(2, 40), rng.randint(2, 9), rng.randint(3, 12)
    c = rng.randint(2, a + n * k - 1)
    return Problem("boxes_give", {
        "en": f"{w.name['en']} has {a} {it.en}. {w.S} buys {n} boxes with {k} {it.en} in each box, then gives "
              f"{c} {it.en} to {w.friend['en']}. How many {it.en} does {w.s} have left?",
        "zh": f"{w.name['zh']}有{a}{m}{it.zh}，又买了{n}盒，每盒{k}{m}，然后送给{w.friend['zh']}{c}{m}。"
              f"{w.zh}还剩多少{m}{it.zh}？"},
        (Step(f"{n} × {k}", n * k, {"en": f"The boxes hold {{eq}} {it.en}", "zh": f"这些盒子里有{{eq}}{m}"}),
         Step(f"{a} + {n * k}", a + n * k, {"en": f"With the {a} {w.s} had, {w.s} has {{eq}}",
                                             "zh": f"加上原来的{a}{m}，一共{{eq}}{m}"}),
         Step(f"{a + n * k} - {c}", a + n * k - c, {"en": f"After giving {c} away, {w.s} has {{eq}} left",
                                                    "zh": f"送出{c}{m}以后还剩{{eq}}{m}"})))


def order_two_change(world: World, rng: random.Random) -> Problem:
    w, r, [(d, n)] = _order(world, rng, 1)
    extra = rng.choice([x for x in r.dishes if x.course != "main" and x is not d])  # a drink or a dessert
    k = rng.randint(2, 4)
    t1, t2 = n * d.price, k * extra.price
    note = _note(t1 + t2, rng)
    return Problem("order_two_change", {
        "en": f"At {r.name.en}, {_cost(d, 'en')} and {_cost(extra, 'en')}. {w.name['en']} orders "
              f"{_orders([(d, n), (extra, k)], 'en')} and pays with {note} dollars. "
              f"How many dollars of change does {w.s} get?",
        "zh": f"在{r.name.zh}，{_cost(d, 'zh')}，{_cost(extra, 'zh')}。{w.name['zh']}点了"
              f"{_orders([(d, n), (extra, k)], 'zh')}，付了{note}元。应该找{w.zh}多少元？"},
        (_dish_step(d, n), _dish_step(extra, k),
         Step(f"{note} - {t1} - {t2}", note - t1 - t2, {"en": "The change is {eq} dollars", "zh": "找零{eq}元"})))


TEMPLATES: dict[int, tuple[Callable[[World, random.Random], Problem], ...]] = {
    1: (buy, give, boxes, order_one),
    2: (buy_give, start_boxes, order_change),
    3: (order_two, boxes_give, order_two_change),
}


def record(problem: Problem, lang: str) -> dict:
    """A problem in ``lang`` as a dataset record (see the module docstring)."""
    question, solution = problem.question[lang], problem.solution(lang)
    return {"question": question, "solution": solution, "answer": problem.gsm8k_answer(lang),
            "direct": FINAL[lang].format(n=problem.answer), "target": str(problem.answer),
            "steps": len(problem.steps), "kind": problem.kind, "lang": lang,
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]}


@dataset("word_problems")
def word_problems(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """About 1,500 train / 300 test problems at scale 1 (at least 60 / 30), a third each of 1, 2 and 3 steps."""
    sizes = {"train": max(60, round(1500 * scale)), "test": max(30, round(300 * scale))}

    def draw() -> tuple[str, Callable[[], dict]]:
        problem = rng.choice(TEMPLATES[rng.randint(1, 3)])(world, rng)
        lang = rng.choice(LANGS)
        return problem.question[lang], lambda: record(problem, lang)

    return fill_splits(sizes, draw, TEST_SHARE)
