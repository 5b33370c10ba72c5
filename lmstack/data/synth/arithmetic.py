"""Arithmetic with worked steps: column addition with carries, subtraction with borrowing, multiplication
split into tens and ones, and word problems about the people of the world."""

from __future__ import annotations

import random
from collections.abc import Iterator

from lmstack.data.synth.facts import pronouns
from lmstack.data.synth.registry import doc, section
from lmstack.data.synth.world import Term, World

ITEMS = [(Term("apples", "苹果"), "个"), (Term("books", "书"), "本"), (Term("pencils", "铅笔"), "支"),
         (Term("eggs", "鸡蛋"), "个"), (Term("flowers", "花"), "朵"), (Term("stamps", "邮票"), "张")]


def add(a: int, b: int, lang: str) -> str:
    ones, tens = a % 10 + b % 10, a // 10 + b // 10 + (a % 10 + b % 10) // 10
    carry = ones >= 10
    plus1 = " + 1" if carry else ""
    if lang == "en":
        return (f"What is {a} + {b}?\nFirst add the ones: {a % 10} + {b % 10} = {ones}."
                + (f" Write {ones % 10} and carry 1." if carry else "")
                + f" Then add the tens: {a // 10} + {b // 10}{plus1} = {tens}. So {a} + {b} = {a + b}.")
    return (f"{a} + {b} 等于多少？\n先算个位：{a % 10} + {b % 10} = {ones}"
            + (f"，写 {ones % 10} 进 1" if carry else "")
            + f"。再算十位：{a // 10} + {b // 10}{plus1} = {tens}。所以 {a} + {b} = {a + b}。")


def subtract(a: int, b: int, lang: str) -> str:
    a1, b1, a10, b10 = a % 10, b % 10, a // 10, b // 10
    borrow = a1 < b1
    minus1 = " - 1" if borrow else ""
    ones, tens = a1 + 10 * borrow - b1, a10 - borrow - b10
    if lang == "en":
        step = (f"{a1} is less than {b1}, so borrow ten: {a1 + 10} - {b1} = {ones}." if borrow
                else f"{a1} - {b1} = {ones}.")
        return f"What is {a} - {b}?\nOnes: {step} Tens: {a10}{minus1} - {b10} = {tens}. So {a} - {b} = {a - b}."
    step = f"{a1} 比 {b1} 小，向十位借一：{a1 + 10} - {b1} = {ones}" if borrow else f"{a1} - {b1} = {ones}"
    return f"{a} - {b} 等于多少？\n个位：{step}。十位：{a10}{minus1} - {b10} = {tens}。所以 {a} - {b} = {a - b}。"


def multiply(a: int, b: int, lang: str) -> str:
    t, o = a - a % 10, a % 10
    if lang == "en":
        return (f"What is {a} × {b}?\nSplit {a} into {t} + {o}. {t} × {b} = {t * b} and {o} × {b} = {o * b}. "
                f"{t * b} + {o * b} = {a * b}. So {a} × {b} = {a * b}.")
    return (f"{a} × {b} 等于多少？\n把 {a} 拆成 {t} + {o}。{t} × {b} = {t * b}，{o} × {b} = {o * b}。"
            f"{t * b} + {o * b} = {a * b}。所以 {a} × {b} = {a * b}。")


def table_fact(a: int, b: int, op: str, lang: str) -> str:
    c = a + b if op == "+" else a * b
    return (f"What is {a} {op} {b}? {a} {op} {b} = {c}." if lang == "en"
            else f"{a} {op} {b} 等于多少？{a} {op} {b} = {c}。")


def word_problem(world: World, rng: random.Random, lang: str) -> str:
    person = rng.choice(world.people)
    friend = world.person(person.friend).name(lang)
    item, m = rng.choice(ITEMS)
    it = item(lang)
    a, b = rng.randint(5, 40), rng.randint(2, 30)
    name, slots = person.name(lang), pronouns(person, lang, named=False)
    S, s = slots["S"], slots["s"]
    if rng.random() < 0.5:
        if lang == "en":
            return (f"{name} has {a} {it}. {S} buys {b} more. How many {it} does {s} have now?\n"
                    f"{a} + {b} = {a + b}. {S} has {a + b} {it} now.")
        return (f"{name}有{a}{m}{it}，又买了{b}{m}。{s}现在有多少{m}{it}？\n"
                f"{a} + {b} = {a + b}。{s}现在有{a + b}{m}{it}。")
    a += b
    if lang == "en":
        return (f"{name} has {a} {it} and gives {b} to {friend}. How many {it} does {s} have left?\n"
                f"{a} - {b} = {a - b}. {S} has {a - b} {it} left.")
    return f"{name}有{a}{m}{it}，送给{friend}{b}{m}。{s}还剩多少{m}{it}？\n{a} - {b} = {a - b}。{s}还剩{a - b}{m}{it}。"


@section("arithmetic", docs=4000)
def arithmetic(world: World, rng: random.Random) -> Iterator[dict]:
    """One problem per document, in English or Chinese at random."""
    while True:
        lang, r = rng.choice(("en", "zh")), rng.random()
        if r < 0.25:
            text = add(rng.randint(10, 99), rng.randint(10, 99), lang)
        elif r < 0.45:
            b = rng.randint(10, 89)
            text = subtract(rng.randint(b + 1, 99), b, lang)
        elif r < 0.6:
            text = multiply(rng.choice([n for n in range(11, 100) if n % 10]), rng.randint(2, 9), lang)
        elif r < 0.8:
            text = table_fact(rng.randint(1, 9), rng.randint(1, 9), rng.choice("+×"), lang)
        else:
            text = word_problem(world, rng, lang)
        yield doc(text, "arithmetic", lang)
