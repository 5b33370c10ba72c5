"""Restaurant menus with prices, and ordering dialogues whose bill is worked out step by step."""

from __future__ import annotations

import random
from collections.abc import Iterator

from lmstack.data.synth.facts import LANGS, dollars, join
from lmstack.data.synth.registry import doc, section
from lmstack.data.synth.world import Dish, Person, Restaurant, World

COURSES = {"main": ("Mains", "主菜"), "dessert": ("Desserts", "甜点"), "drink": ("Drinks", "饮品")}
COUNT = {"en": ("one", "two", "three"), "zh": ("一份", "两份", "三份")}


def menu_text(r: Restaurant, lang: str) -> str:
    """The menu, grouped by course: "- Tomato soup: 5 dollars" / "- 番茄汤：5元"."""
    lines = [f"Menu of {r.name.en}, {r.place.name.en}" if lang == "en" else f"{r.place.name.zh}{r.name.zh}菜单"]
    for course, titles in COURSES.items():
        lines.append(titles[0] + ":" if lang == "en" else titles[1] + "：")
        for d in (d for d in r.dishes if d.course == course):
            lines.append(f"- {d.name.en.capitalize()}: {dollars(d.price)}" if lang == "en"
                         else f"- {d.name.zh}：{d.price}元")
    return "\n".join(lines)


def order_phrase(order: list[tuple[Dish, int]], lang: str) -> str:
    """[(tomato soup, 2), (lemon tea, 1)] -> "two tomato soups and one lemon tea" / "两份番茄汤和一份柠檬茶"."""
    if lang == "en":
        return join([f"{COUNT['en'][n - 1]} {d.name.en if n == 1 else d.plural}" for d, n in order], "en")
    return join([f"{COUNT['zh'][n - 1]}{d.name.zh}" for d, n in order], "zh")


def dialogue(r: Restaurant, person: Person, order: list[tuple[Dish, int]], asked: Dish | None, lang: str) -> str:
    """A customer (optionally asking one price first) orders, is told the total, pays and gets change."""
    total = sum(d.price * n for d, n in order)
    expr = " + ".join(f"{n} × {d.price}" for d, n in order)
    bill = f"{expr} = {total}" if len(order) > 1 or order[0][1] > 1 else str(total)
    pay = (total // 10 + 1) * 10
    who, phrase = person.first(lang), order_phrase(order, lang)
    if lang == "en":
        lines = [f"Waiter: Welcome to {r.name.en}! What would you like?"]
        if asked:
            lines += [f"{who}: How much is the {asked.name.en}?",
                      f"Waiter: The {asked.name.en} is {dollars(asked.price)}."]
        lines += [f"{who}: I would like {phrase}, please.",
                  f"Waiter: {phrase[0].upper() + phrase[1:]}. That comes to {bill} "
                  f"{'dollar' if total == 1 else 'dollars'}.",
                  f"{who}: Here are {dollars(pay)}.",
                  f"Waiter: Your change is {pay} - {total} = {dollars(pay - total)}. Thank you!"]
    else:
        lines = [f"服务员：欢迎光临{r.name.zh}！您想吃点什么？"]
        if asked:
            lines += [f"{who}：{asked.name.zh}多少钱？", f"服务员：{asked.name.zh}{asked.price}元。"]
        lines += [f"{who}：我要{phrase}。", f"服务员：{phrase}，一共是 {bill} 元。", f"{who}：给您{pay}元。",
                  f"服务员：找您 {pay} - {total} = {pay - total} 元，谢谢！"]
    return "\n".join(lines)


@section("menu", docs=2400)
def menus(world: World, rng: random.Random) -> Iterator[dict]:
    """Mostly ordering dialogues, sometimes a whole menu; each in English, then the same in Chinese."""
    while True:
        r = rng.choice(world.restaurants)
        if rng.random() < 0.15:
            for lang in LANGS:
                yield doc(menu_text(r, lang), "menu", lang)
            continue
        person = rng.choice(world.people)
        order = [(d, rng.randint(1, 3)) for d in rng.sample(r.dishes, rng.randint(1, 3))]
        asked = rng.choice(r.dishes) if rng.random() < 0.4 else None
        for lang in LANGS:
            yield doc(dialogue(r, person, order, asked, lang), "dialogue", lang)
