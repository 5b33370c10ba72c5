"""The ordering example runs its conversation through the server and works the order out from the customer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lmstack.data.synth import build_world

from .conftest import API_KEY

BOT = Path(__file__).resolve().parents[2] / "examples" / "ordering_bot" / "bot.py"


def load_bot():
    spec = importlib.util.spec_from_file_location("ordering_bot", BOT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bot_takes_an_order_over_several_turns(server, capsys):
    bot = load_bot()
    result = bot.main(["--base-url", server + "/v1", "--api-key", API_KEY, "--max-tokens", "6"])
    restaurant = build_world(0).restaurants[0]
    a, b, c = restaurant.dishes[0], restaurant.dishes[5], restaurant.dishes[6]
    assert result["order"] == {a.name.en: 2, b.name.en: 1, c.name.en: 1}
    assert result["total"] == 2 * a.price + b.price + c.price
    roles = [m["role"] for m in result["messages"]]
    assert roles == ["system"] + ["user", "assistant"] * 4
    assert restaurant.dishes[0].name.en.capitalize() in result["messages"][0]["content"]
    assert "waiter> " in capsys.readouterr().out


def test_orders_are_counted_in_both_languages():
    bot = load_bot()
    restaurant = build_world(0).restaurants[0]
    a, b = restaurant.dishes[0], restaurant.dishes[1]
    assert bot.ordered(restaurant, [f"two {a.plural} and a {b.name.en}", f"one {a.name.en}"]) == {a: 3, b: 1}
    assert bot.ordered(restaurant, [f"我要两份{a.name.zh}和一份{b.name.zh}。"]) == {a: 2, b: 1}
