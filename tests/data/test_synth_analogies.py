"""The synthetic world's analogy questions: every question's two pairs hold in the world, and the file reads."""

from __future__ import annotations

import json
import random
from collections import Counter

from lmstack.data.synth import DATASETS, build_world
from lmstack.data.synth.analogies import relations
from lmstack.interpret.analogies import read_questions


def test_every_question_joins_two_facts_of_its_section(tmp_path):
    world = build_world(0)
    records = DATASETS["analogies"](world, random.Random("0:dataset:analogies"), 1.0)["test"]
    facts = {name: set(pairs) for name, (_, pairs) in relations(world).items()}
    assert set(Counter(r["section"] for r in records)) == set(facts)
    homes = {p.name("en"): p.home.name.en for p in world.people}
    for r in records:
        assert {(r["a"], r["b"]), (r["c"], r["d"])} <= facts[r["section"]] and r["a"] != r["c"] and r["b"] != r["d"]
        if r["section"] == "person-home":
            assert homes[r["a"]] == r["b"] and homes[r["c"]] == r["d"]
    assert len({tuple(r.values()) for r in records}) == len(records)  # no question twice
    assert Counter(r["section"] for r in records)["person-home"] == 100
    path = tmp_path / "analogies_test.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert [q.words for q in read_questions(path)] == [(r["a"], r["b"], r["c"], r["d"]) for r in records]
