"""The synthetic world's evaluation datasets: word problems, parallel sentences, summaries, multiple choice."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from lmstack.data.synth import DATASETS, build_world, synth
from lmstack.data.synth.choice_questions import N_CHOICES

NAMES = ("word_problems", "translation", "summaries", "choice_questions")
KEY = {"word_problems": "question", "translation": "en", "summaries": "document", "choice_questions": "question"}
HAN = re.compile(r"[\u4e00-\u9fff]")
EQUATION = re.compile(r"(\d+(?: [-+×] \d+)+) = (\d+)")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_tasks")
    synth(root, seed=0, scale=0.05)
    return root


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def data(out):
    return {name: {split: lines(out / f"{name}_{split}.jsonl") for split in ("train", "test")} for name in NAMES}


def make(name, seed=0, scale=0.05):
    return DATASETS[name](build_world(seed), random.Random(f"{seed}:dataset:{name}"), scale)


def test_synth_writes_every_dataset_and_the_same_seed_gives_the_same_bytes(out, tmp_path):
    synth(tmp_path / "again", seed=0, scale=0.05)
    synth(tmp_path / "other", seed=1, scale=0.05)
    for name in NAMES:
        for split in ("train", "test"):
            file = f"{name}_{split}.jsonl"
            assert (out / file).read_bytes() == (tmp_path / "again" / file).read_bytes(), file
            assert (out / file).read_bytes() != (tmp_path / "other" / file).read_bytes(), file


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_disjoint_unique_and_hold_both_languages(data, name):
    splits = data[name]
    train, test = ({r[KEY[name]] for r in splits[s]} for s in ("train", "test"))
    assert len(train) == len(splits["train"]) and len(test) == len(splits["test"])  # no text twice
    assert test and not train & test
    records = splits["train"] + splits["test"]
    if name == "translation":
        assert all(HAN.search(r["zh"]) and not HAN.search(r["en"]) for r in records)
    else:
        langs = Counter(r["lang"] for r in records)
        assert langs["en"] > 0 and langs["zh"] > 0
        assert all(bool(HAN.search(r[KEY[name]])) == (r["lang"] == "zh") for r in records)


def test_sizes_at_scale_one():
    sizes = {name: {s: len(r) for s, r in make(name, scale=1.0).items()} for name in NAMES[:3]}
    assert sizes == {"word_problems": {"train": 1500, "test": 300}, "translation": {"train": 1000, "test": 200},
                     "summaries": {"train": 800, "test": 150}}


def test_worked_solutions_recompute_and_agree_with_the_direct_and_gsm8k_answers():
    records = [r for split in make("word_problems", scale=0.3).values() for r in split]
    assert Counter(r["steps"] for r in records).keys() == {1, 2, 3}
    assert min(Counter(r["steps"] for r in records).values()) > len(records) / 5  # about a third each
    for r in records:
        final = {"en": "The answer is {}.", "zh": "答案是 {}。"}[r["lang"]].format(r["target"])
        assert r["solution"].endswith(" " + final if r["lang"] == "en" else final)
        assert r["direct"] == final
        equations = EQUATION.findall(r["solution"])
        assert len(equations) == r["steps"]
        for expr, value in equations:  # every step is true arithmetic
            assert eval(expr.replace("×", "*")) == int(value), expr
        assert equations[-1][1] == r["target"] and int(r["target"]) >= 0
        steps, gold = r["answer"].rsplit("\n#### ", 1)
        assert gold == r["target"] and EQUATION.findall(steps) == equations
        assert r["messages"] == [{"role": "user", "content": r["question"]},
                                 {"role": "assistant", "content": r["solution"]}]


def test_word_problem_numbers_come_from_the_question():
    """Every operand of the first step is stated in the question (prices included), so it is not recall."""
    for r in make("word_problems", scale=0.1)["test"]:
        first = EQUATION.findall(r["solution"])[0][0]
        assert all(n in re.findall(r"\d+", r["question"]) for n in re.findall(r"\d+", first)), r


def test_choice_questions_are_right_by_the_world_with_distinct_distractors(data):
    world = build_world(0)
    homes = {p.name(lang): p.home.name(lang) for p in world.people for lang in ("en", "zh")}
    checked = 0
    for r in data["choice_questions"]["train"] + data["choice_questions"]["test"]:
        assert len(r["choices"]) == len(set(r["choices"])) == N_CHOICES and 0 <= r["label"] < N_CHOICES
        m = re.fullmatch(r"Where does (.+) live\?|(.+)住在哪里？", r["question"])
        if m:
            assert r["choices"][r["label"]] == homes[m[1] or m[2]]
            checked += 1
    assert checked > 20
    labels = Counter(r["label"] for r in data["choice_questions"]["train"])
    assert len(labels) == N_CHOICES and min(labels.values()) > 0.15 * sum(labels.values())


def test_translation_pairs_name_the_same_people(data):
    world = build_world(0)
    for r in data["translation"]["train"] + data["translation"]["test"]:
        assert [p.first.en for p in world.people if p.name("en") in r["en"]] == \
            [p.first.en for p in world.people if p.name("zh") in r["zh"]]


def test_summaries_state_facts_of_their_document(data):
    world = build_world(0)
    for r in data["summaries"]["train"] + data["summaries"]["test"]:
        if r["kind"] != "person":
            continue
        person = next(p for p in world.people if r["summary"].startswith(p.name(r["lang"])))
        for fact in (person.home.name(r["lang"]), person.job(r["lang"]), str(person.age)):
            assert fact in r["summary"] and fact in r["document"]
        assert len(r["summary"]) < len(r["document"])
