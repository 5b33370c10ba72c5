"""Tool-use conversations (OpenAI ``messages`` + ``tools``), so a small tuned model learns when to call one.

Three kinds, in English and Chinese: arithmetic the model should hand to the ``calculator`` (the result is
worked out by the very calculator ``lmstack chat --tools`` runs), questions about the world it should
``search`` for (the tool answers with passages stating the fact, then the model answers in a sentence), and
requests it should answer directly. Test questions never occur in the training split.
"""

from __future__ import annotations

import json
import random

from lmstack.tools.calculator import calculate, format_number
from lmstack.tools.specs import CALCULATOR_SPEC, SEARCH_SPEC
from lmstack.data.synth.facts import dollars, person_fact, place_slots, say
from lmstack.data.synth.qa import PERSON_QUESTIONS, PLACE_QUESTIONS, translate
from lmstack.data.synth.registry import dataset
from lmstack.data.synth.world import World

TOOLS = [{"type": "function", "function": CALCULATOR_SPEC}, {"type": "function", "function": SEARCH_SPEC}]
TRAIN, TEST = 2000, 200  # conversations at scale 1.0
ASK = {"en": ["What is {e}?", "Calculate {e}.", "How much is {e}?", "Please work out {e}."],
       "zh": ["{e}等于多少？", "请计算{e}。", "{e}是多少？", "帮我算一下{e}。"]}
RESULT = {"en": "{e} = {r}.", "zh": "{e} = {r}。"}
TOPIC = {"home": ("home", "住在哪里"), "job": ("job", "工作"), "age": ("age", "年龄"), "pet": ("pet", "宠物"),
         "hobby": ("hobby", "爱好"), "food": ("favourite food", "最喜欢的食物"),
         "friend": ("best friend", "最好的朋友"),
         "landmark": ("known for", "以什么闻名"), "population": ("population", "人口"),
         "residents": ("residents", "居民"), "restaurant": ("restaurant", "餐厅")}
DIRECT = {"en": ["Hello!", "Hi, who are you?", "Thank you!"], "zh": ["你好！", "你是谁？", "谢谢你！"]}
GREETING = {"en": "Hello! I can calculate and look things up for you.", "zh": "你好！我可以帮你计算和查询信息。"}


@dataset("tools")
def tools(world: World, rng: random.Random, scale: float) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]}: records {"messages", "tools", "kind", "lang"} (search ones also name
    the "entity" a right query mentions)."""
    n_train, n_test = max(1, round(TRAIN * scale)), max(1, round(TEST * scale))
    test: dict[str, dict] = {}
    while len(test) < n_test:
        record = conversation(world, rng)
        test.setdefault(record["messages"][0]["content"], record)
    train: list[dict] = []
    while len(train) < n_train:
        record = conversation(world, rng)
        if record["messages"][0]["content"] not in test:
            train.append(record)
    return {"train": train, "test": list(test.values())}


def conversation(world: World, rng: random.Random) -> dict:
    lang, r = rng.choice(("en", "zh")), rng.random()
    make = arithmetic if r < 0.45 else lookup if r < 0.85 else direct
    return make(world, rng, lang)


def arithmetic(world: World, rng: random.Random, lang: str) -> dict:
    """A sum the calculator works out: plain, or the price of an order at a restaurant."""
    if rng.random() < 0.3:
        restaurant = rng.choice(world.restaurants)
        dish, n = rng.choice(restaurant.dishes), rng.randint(2, 9)
        expression = f"{n} * {dish.price}"
        question = (f"{dish.name.en.capitalize()} costs {dollars(dish.price)}. How much do {n} cost?" if lang == "en"
                    else f"{dish.name.zh}{dish.price}元一份，{n}份多少钱？")
    else:
        numbers = [rng.randint(2, 999) for _ in range(rng.randint(2, 3))]
        ops = [rng.choice("+-*") for _ in numbers[1:]]
        expression = str(numbers[0]) + "".join(f" {op} {n}" for op, n in zip(ops, numbers[1:]))
        if len(numbers) == 3 and rng.random() < 0.3:
            expression = f"({expression.rsplit(' ', 2)[0]}) {ops[-1]} {numbers[-1]}"
        question = rng.choice(ASK[lang]).format(e=expression)
    result = format_number(calculate(expression))
    return _called(question, "calculator", {"expression": expression}, result,
                   RESULT[lang].format(e=expression, r=result), "calculator", lang)


def lookup(world: World, rng: random.Random, lang: str) -> dict:
    """A question about a person or a place, answered from passages the search tool returns."""
    if rng.random() < 0.7:
        person = rng.choice(world.people)
        key = rng.choice(list(PERSON_QUESTIONS))
        en, zh, fact, variant = PERSON_QUESTIONS[key]
        fact = "nopet" if fact == "pet" and not person.pet else fact
        name = person.name(lang)
        question = (en if lang == "en" else zh).format(name=name)
        answer = person_fact(world, person, fact, lang, named=True, variant=variant)
        other = rng.choice([k for k in ("home", "job", "age") if k != fact])
        passages = [answer + (" " if lang == "en" else "") + person_fact(world, person, other, lang, named=False)]
    else:
        place = rng.choice(world.places)
        key = rng.choice([k for k in PLACE_QUESTIONS if k != "residents" or world.residents(place)])
        asked, said = PLACE_QUESTIONS[key]
        slots = place_slots(world, place, lang)
        name, question, answer = place.name(lang), say([asked], 0, lang, slots), say([said], 0, lang, slots)
        passages = [answer]
    stranger = rng.choice(world.people)
    if stranger.name(lang) != name:
        passages.insert(rng.randint(0, 1), person_fact(world, stranger, rng.choice(["home", "job"]), lang))
    query = f"{name} {TOPIC[key][0]}" if lang == "en" else f"{name}{TOPIC[key][1]}"
    results = "\n".join(f"{i}. {p}" for i, p in enumerate(passages, 1))
    return {**_called(question, "search", {"query": query}, results, answer, "search", lang), "entity": name}


def direct(world: World, rng: random.Random, lang: str) -> dict:
    """A greeting or a translation: answered without a tool."""
    if rng.random() < 0.3:
        question, answer = rng.choice(DIRECT[lang]), GREETING[lang]
    else:
        question, answer = translate(world, rng, lang)
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "tools": TOOLS, "kind": "direct", "lang": lang}


def _called(question: str, tool: str, arguments: dict, result: str, answer: str, kind: str, lang: str) -> dict:
    call = {"id": "call_0", "type": "function",
            "function": {"name": tool, "arguments": json.dumps(arguments, ensure_ascii=False)}}
    messages = [{"role": "user", "content": question},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_0", "content": result},
                {"role": "assistant", "content": answer}]
    return {"messages": messages, "tools": TOOLS, "kind": kind, "lang": lang}
