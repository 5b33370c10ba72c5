"""An ordering assistant for a restaurant of the synthetic world, run through ``lmstack serve`` with the
official ``openai`` client: the menu is in the system prompt, the customer orders over several turns, and
the bot confirms the order with its total.

    lmstack serve --model runs/chat/model --port 8000 &
    python examples/ordering_bot/bot.py --base-url http://127.0.0.1:8000/v1 --model model
    python examples/ordering_bot/bot.py --interactive          # type the customer's lines yourself
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable

from openai import OpenAI

from lmstack.data.synth import build_world
from lmstack.data.synth.menu import menu_text
from lmstack.data.synth.world import Dish, Restaurant

INSTRUCTIONS = {
    "en": ("You are the waiter of {name}. Take the customer's order using only dishes on the menu below, "
           "tell them prices when asked, and when they are done repeat the whole order with its total.\n\n{menu}"),
    "zh": ("你是{name}的服务员。只用下面菜单上的菜为顾客点菜，顾客问价格时告诉他们，"
           "点完后复述整份订单和总价。\n\n{menu}"),
}
NUMBERS = {"one": 1, "two": 2, "three": 3, "a": 1, "an": 1, "一": 1, "两": 2, "二": 2, "三": 3}


def system_prompt(restaurant: Restaurant, lang: str) -> str:
    return INSTRUCTIONS[lang].format(name=restaurant.name(lang), menu=menu_text(restaurant, lang))


def script(restaurant: Restaurant, lang: str) -> list[str]:
    """A customer who asks a price, orders in two turns, and asks for confirmation."""
    a, b, c = restaurant.dishes[0], restaurant.dishes[5], restaurant.dishes[6]
    if lang == "en":
        return [f"How much is the {a.name.en}?", f"I would like two {a.plural}, please.",
                f"And one {b.name.en} and one {c.name.en}.", "That's all. Please confirm my order."]
    return [f"{a.name.zh}多少钱？", f"我要两份{a.name.zh}。", f"再来一份{b.name.zh}和一份{c.name.zh}。",
            "就这些，请确认我的订单。"]


def ordered(restaurant: Restaurant, customer_lines: Iterable[str]) -> dict[Dish, int]:
    """The order as the customer stated it (what a correct confirmation must repeat): "two tomato soups"."""
    order: dict[Dish, int] = {}
    for line in customer_lines:
        for dish in restaurant.dishes:
            names = "|".join(re.escape(n) for n in (dish.plural, dish.name.en, dish.name.zh))
            for m in re.finditer(rf"(?:\b(one|two|three|an?)\s+|(一|两|二|三)份)(?:{names})", line, re.I):
                order[dish] = order.get(dish, 0) + NUMBERS[(m.group(1) or m.group(2)).lower()]
    return order


def chat(client: OpenAI, model: str, system: str, lines: Iterable[str], temperature: float,
         max_tokens: int) -> list[dict]:
    """Play the customer's ``lines``; print and return the conversation."""
    messages = [{"role": "system", "content": system}]
    for line in lines:
        messages.append({"role": "user", "content": line})
        print(f"customer> {line}\nwaiter> ", end="", flush=True)
        reply = ""
        for chunk in client.chat.completions.create(model=model, messages=messages, stream=True, max_tokens=max_tokens,
                                                    temperature=temperature):
            piece = chunk.choices[0].delta.content or "" if chunk.choices else ""
            print(piece, end="", flush=True)
            reply += piece
        print()
        messages.append({"role": "assistant", "content": reply or "…"})
    return messages


def typed() -> Iterable[str]:
    while True:
        try:
            line = input("customer> ")
        except EOFError:
            return
        if line.strip() in ("", "/exit"):
            return
        yield line


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="an ordering assistant over lmstack serve")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default=None, help="model id (default: the server's only model)")
    parser.add_argument("--api-key", default=os.environ.get("LMSTACK_API_KEY", "none"))
    parser.add_argument("--lang", choices=("en", "zh"), default="en")
    parser.add_argument("--restaurant", type=int, default=0, help="which restaurant of world 0")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--max-tokens", type=int, default=96, help="the longest reply")
    parser.add_argument("--interactive", action="store_true", help="type the customer's lines")
    args = parser.parse_args(argv)
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = args.model or client.models.list().data[0].id
    restaurant = build_world(0).restaurants[args.restaurant]
    lines = list(typed()) if args.interactive else script(restaurant, args.lang)
    messages = chat(client, model, system_prompt(restaurant, args.lang), lines, args.temperature, args.max_tokens)
    order = ordered(restaurant, lines)
    total = sum(d.price * n for d, n in order.items())
    print(f"\norder: {', '.join(f'{n} x {d.name(args.lang)}' for d, n in order.items())}; total {total}")
    return {"messages": messages, "order": {d.name(args.lang): n for d, n in order.items()}, "total": total}


if __name__ == "__main__":
    main()
