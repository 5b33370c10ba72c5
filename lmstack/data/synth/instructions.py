"""Instruction-tuning data about the world (the ``sft`` dataset): OpenAI-format conversations.

Questions whose answers are facts of the pretraining corpus, tasks (translate, sort, describe, list, add,
subtract, multiply, show a menu) and multi-turn ordering dialogues with a waiter, in English and Chinese.
The split is by the text of the first user turn (a keyed hash), so no test question is seen in training;
the test set scores a model by exact match of its last assistant turn.
"""

from __future__ import annotations

import random

from lmstack.data.synth.arithmetic import add, multiply, subtract
from lmstack.data.synth.facts import LANGS, dollars
from lmstack.data.synth.menu import menu_text, order_phrase
from lmstack.data.synth.qa import TASKS, person_question, place_question, price_question
from lmstack.data.synth.registry import dataset, held_out
from lmstack.data.synth.world import World

TEST_SHARE = 10  # one conversation in ten is held out
SYSTEM_WAITER = {"en": "You are the waiter at {r}. Take the order and work out the bill.",
                 "zh": "你是{r}的服务员。请帮客人点菜并算账。"}


def arithmetic_task(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    op = rng.choice((add, subtract, multiply))
    a, b = ((rng.randint(10, 99), rng.randint(10, 99)) if op is not multiply
            else (rng.randint(11, 99), rng.randint(2, 9)))
    a, b = (max(a, b), min(a, b)) if op is subtract else (a, b)
    question, worked = op(a, b, lang).split("\n", 1)
    return question, worked


def show_menu(world: World, rng: random.Random, lang: str) -> tuple[str, str]:
    r = rng.choice(world.restaurants)
    q = f"Show me the menu of {r.name.en}." if lang == "en" else f"给我看看{r.name.zh}的菜单。"
    return q, menu_text(r, lang)


SINGLE_TURN = [person_question, person_question, place_question, price_question, arithmetic_task, show_menu, *TASKS]


def ordering(world: World, rng: random.Random, lang: str) -> list[dict]:
    """system (the waiter's restaurant) -> order -> bill -> payment -> change, sometimes a price question first."""
    r, _customer = rng.choice(world.restaurants), rng.choice(world.people)  # the customer stays unnamed in chat
    order = [(d, rng.randint(1, 3)) for d in rng.sample(r.dishes, rng.randint(1, 3))]
    total = sum(d.price * n for d, n in order)
    bill = " + ".join(f"{n} × {d.price}" for d, n in order) + f" = {total}" if len(order) > 1 or order[0][1] > 1 \
        else str(total)
    pay = (total // 10 + 1) * 10
    phrase = order_phrase(order, lang)
    messages = [{"role": "system", "content": SYSTEM_WAITER[lang].format(r=r.name(lang))}]
    if rng.random() < 0.4:
        d = rng.choice(r.dishes)
        messages += [{"role": "user", "content": f"How much is the {d.name.en}?" if lang == "en"
                      else f"{d.name.zh}多少钱？"},
                     {"role": "assistant", "content": f"The {d.name.en} is {dollars(d.price)}." if lang == "en"
                      else f"{d.name.zh}{d.price}元。"}]
    if lang == "en":
        turns = [(f"I would like {phrase}, please.", f"{phrase[0].upper() + phrase[1:]}. That comes to {bill} "
                  f"{'dollar' if total == 1 else 'dollars'}."),
                 (f"Here are {dollars(pay)}.", f"Your change is {pay} - {total} = {dollars(pay - total)}. Thank you!")]
    else:
        turns = [(f"我要{phrase}。", f"{phrase}，一共是 {bill} 元。"),
                 (f"给您{pay}元。", f"找您 {pay} - {total} = {pay - total} 元，谢谢！")]
    for user, assistant in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages


@dataset("sft")
def sft(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """About 3,000 unique conversations at scale 1 (a fifth of them ordering dialogues), split 9:1."""
    wanted, seen = max(50, round(3000 * scale)), set()
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    for _ in range(wanted * 20):
        if len(seen) >= wanted:
            break
        lang = rng.choice(LANGS)
        if rng.random() < 0.2:
            messages, kind = ordering(world, rng, lang), "ordering"
        else:
            task = rng.choice(SINGLE_TURN)
            q, a = task(world, rng, lang)
            messages, kind = [{"role": "user", "content": q}, {"role": "assistant", "content": a}], task.__name__
        key = "\n".join(m["content"] for m in messages if m["role"] != "assistant")
        if key in seen:
            continue
        seen.add(key)
        split = "test" if held_out(key, TEST_SHARE) else "train"
        splits[split].append({"messages": messages, "kind": kind, "lang": lang})
    return splits
