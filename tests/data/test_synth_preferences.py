"""The synthetic world's preference and RL-prompt datasets, and the rule judge that scores replies to them."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from lmstack.data.preferences import read_preferences, read_prompts
from lmstack.data.synth import DATASETS, build_world, synth
from lmstack.data.synth.preferences import judge, script
from lmstack.errors import LmstackError

FLAW = {"wrong_fact": "correct", "rude": "polite", "wrong_language": "right_language"}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth(root, seed=0, scale=0.05)
    return root


def lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def prompt_texts(records):
    return {r["prompt"][0]["content"] for r in records}


def test_sizes_at_scale_one_and_the_smallest_scales():
    world = build_world(0)
    full = {name: DATASETS[name](world, random.Random(f"0:dataset:{name}"), 1.0) for name in ("preferences",
                                                                                            "rl_prompts")}
    assert {n: {s: len(r) for s, r in d.items()} for n, d in full.items()} == {
        "preferences": {"train": 1500, "test": 150}, "rl_prompts": {"train": 1000, "test": 150}}
    kinds = Counter(r["kind"] for r in full["preferences"]["train"])
    assert set(kinds) == set(FLAW) and min(kinds.values()) > 400  # about a third each
    asked = Counter((r["lang"] != r["prompt_lang"], r["prompt"][0]["content"][:7] in ("Answer ", "请用英文回答：",
                                                                                     "请用中文回答："))
                    for r in full["preferences"]["train"])
    assert asked[True, True] > 400 and asked[False, True] > 100 and asked[False, False] > 600
    tiny = DATASETS["preferences"](world, random.Random("x"), 0.001)
    assert (len(tiny["train"]), len(tiny["test"])) == (60, 20)


def test_splits_are_disjoint_by_prompt_within_and_across_datasets(out):
    prefs = {s: lines(out / f"preferences_{s}.jsonl") for s in ("train", "test")}
    rl = {s: lines(out / f"rl_prompts_{s}.jsonl") for s in ("train", "test")}
    assert (len(prefs["train"]), len(prefs["test"]), len(rl["train"]), len(rl["test"])) == (75, 20, 60, 20)
    for split in (prefs, rl):
        assert len(prompt_texts(split["train"])) == len(split["train"])  # no prompt twice
        assert not prompt_texts(split["train"]) & prompt_texts(split["test"])
    assert not prompt_texts(rl["train"]) & prompt_texts(prefs["test"])
    assert not prompt_texts(prefs["train"]) & prompt_texts(rl["test"])


def test_every_language_kind_and_task_is_present_and_answers_are_short(out):
    records = lines(out / "preferences_train.jsonl") + lines(out / "preferences_test.jsonl")
    assert {r["lang"] for r in lines(out / "preferences_test.jsonl")} == {"en", "zh"}
    assert {(r["kind"], r["lang"]) for r in records} == {(k, lang) for k in FLAW for lang in ("en", "zh")}
    assert {r["task"] for r in records} == {"person", "place", "price", "arithmetic"}
    assert {r["kind"] for r in lines(out / "rl_prompts_train.jsonl")} == {"person", "place", "price", "arithmetic"}
    assert all(r["chosen"] != r["rejected"] and len(r["chosen"]) < 90 and len(r["rejected"]) < 90 for r in records)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_judge_calls_chosen_the_chosen_kind_and_each_rejected_exactly_its_flaw(seed):
    world = build_world(seed)
    data = DATASETS["preferences"](world, random.Random(f"{seed}:dataset:preferences"), 0.3)
    for r in data["train"] + data["test"]:
        meta = {k: v for k, v in r.items() if k not in ("prompt", "chosen", "rejected")}
        assert judge(meta, r["chosen"]) == dict.fromkeys(("correct", "right_language", "polite", "chosen_kind"),
                                                         True), r
        verdict = judge(meta, r["rejected"])
        assert verdict == {"correct": True, "right_language": True, "polite": True, "chosen_kind": False} | {
            FLAW[r["kind"]]: False}, r


def test_judge_rules_on_handwritten_replies():
    sum_ = {"answer": "68", "answer_alt": "68", "lang": "en", "match": "last_number"}
    assert judge(sum_, "Sure! 23 + 45 equals 68.")["chosen_kind"]
    assert not judge(sum_, "Sure! 68 is not it: 23 + 45 equals 67.")["correct"]  # the last number counts
    assert judge(sum_, "23 + 45 = 68") == {"correct": True, "right_language": False, "polite": False,
                                           "chosen_kind": False}  # no words: no language
    home = {"answer": "贝尔港", "answer_alt": "Bellhaven", "lang": "zh", "match": "text"}
    assert judge(home, "好的！米拉住在贝尔港。")["chosen_kind"]
    assert judge(home, "Sure! Mira lives in BELLHAVEN.") == {"correct": True, "right_language": False,
                                                             "polite": True, "chosen_kind": False}
    assert not judge(home, "好的！烦死了，米拉住在贝尔港。")["polite"]  # a rude marker spoils a courtesy
    assert not judge(home, "米拉最好的朋友住在贝尔港。")["polite"]  # "最好的" is not "好的！"
    assert judge(sum_, "Sure! Even though it is hard, 23 + 45 equals 68.")["polite"]  # "though" is not "ugh"
    assert not judge(sum_, "Sure! UGH, 23 + 45 equals 68.")["polite"]
    age = {"answer": "45", "lang": "en", "match": "number"}
    assert judge(age, "Of course! Mira is 45 years old.")["correct"] and not judge(age, "Mira is 450.")["correct"]
    assert (script("好的！Mira住在贝尔港。"), script("好的！Mira Castell lives in Bellhaven."), script("42")) == (
        "zh", "en", None)
    with pytest.raises(LmstackError, match=r"judge: the record has no 'lang' field"):
        judge({"answer": "1"}, "1")
    with pytest.raises(LmstackError, match=r"judge: unknown match 'regex'"):
        judge({"answer": "1", "lang": "en", "match": "regex"}, "1")


def test_files_read_back_with_the_readers(out):
    for split in ("train", "test"):
        raw = lines(out / f"preferences_{split}.jsonl")
        pairs = read_preferences(out / f"preferences_{split}.jsonl")
        assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [(r["prompt"], r["chosen"], r["rejected"])
                                                                     for r in raw]
        assert pairs[0].meta == {k: v for k, v in raw[0].items() if k not in ("prompt", "chosen", "rejected")}
        prompts = read_prompts(out / f"rl_prompts_{split}.jsonl")
        assert all(set(p.meta) == {"kind", "lang", "prompt_lang", "task", "answer", "answer_alt", "match"}
                   for p in prompts)
        assert all(p.prompt[-1]["role"] == "user" for p in prompts)


def test_adding_the_datasets_leaves_every_other_file_byte_identical(tmp_path, monkeypatch):
    synth(tmp_path / "with", seed=0, scale=0.05)
    for name in ("preferences", "rl_prompts"):
        monkeypatch.delitem(DATASETS, name)
    synth(tmp_path / "without", seed=0, scale=0.05)
    others = sorted(p.name for p in (tmp_path / "without").iterdir())
    assert "sft_train.jsonl" in others and "preferences_train.jsonl" not in others
    for name in others:
        assert (tmp_path / "with" / name).read_bytes() == (tmp_path / "without" / name).read_bytes(), name
