import json
import random
from collections import Counter

from lmstack.data.synth import DATASETS, build_world, synth
from lmstack.data.synth.passages import qa


def records(seed=0, scale=1.0):
    return qa(build_world(seed), random.Random(f"{seed}:dataset:qa"), scale)


def test_every_answer_is_the_exact_substring_at_its_offset_in_its_passage():
    splits = records()
    passages = {p["id"]: p for p in splits["passages"]}
    for r in splits["train"] + splits["test"]:
        assert list(r) == ["id", "lang", "passage_id", "question", "context", "answers", "is_impossible"]
        assert r["context"] == passages[r["passage_id"]]["text"] and r["lang"] == passages[r["passage_id"]]["lang"]
        assert r["is_impossible"] == (r["answers"] == [])
        for a in r["answers"]:
            assert a["text"] and r["context"][a["answer_start"]:a["answer_start"] + len(a["text"])] == a["text"]


def test_passages_and_questions_come_in_both_languages_with_some_unanswerable():
    splits = records()
    assert Counter(p["lang"] for p in splits["passages"]) == {"en": 48, "zh": 48}  # 32 people, 8 towns, 8 restaurants
    for split in ("train", "test"):
        langs = Counter(r["lang"] for r in splits[split])
        assert langs["en"] > 50 and langs["zh"] > 50
    impossible = [r for r in splits["train"] + splits["test"] if r["is_impossible"]]
    assert impossible and all("pet" in r["question"] or "宠物" in r["question"] or "动物" in r["question"]
                              for r in impossible)
    assert len({r["id"] for r in splits["train"] + splits["test"]}) == len(splits["train"]) + len(splits["test"])


def test_held_out_questions_ask_facts_no_training_question_asked():
    splits = records()
    def fact(r):
        return r["id"].rsplit("-", 1)[0]  # "person-03-en-home-1" -> the (passage, fact) group

    assert not {fact(r) for r in splits["train"]} & {fact(r) for r in splits["test"]}
    assert not {r["question"] for r in splits["train"]} & {r["question"] for r in splits["test"]}


def test_answers_agree_with_the_world():
    world = build_world(0)
    homes = {p.name("en"): p.home.name.en for p in world.people}
    checked = 0
    for r in records()["train"]:
        if r["question"].startswith("Where does "):
            assert r["answers"][0]["text"] == homes[r["question"][len("Where does "):-len(" live?")]]
            checked += 1
    assert checked > 5


def test_deterministic_and_scale_aware():
    assert records(3) == records(3)
    assert records(3)["train"] != records(4)["train"]
    small = records(0, scale=0.1)
    assert len(small["passages"]) == 96 and 0 < len(small["train"]) < len(records()["train"]) / 5


def test_synth_writes_the_files_and_leaves_pretraining_text_unchanged(tmp_path, monkeypatch):
    result = synth(tmp_path / "with", seed=1, scale=0.05)
    assert result["datasets"]["qa_passages"] == 96
    for name in ("qa_passages", "qa_train", "qa_test"):
        lines = (tmp_path / "with" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == result["datasets"][name] and json.loads(lines[0])["id"]
    monkeypatch.delitem(DATASETS, "qa")
    synth(tmp_path / "without", seed=1, scale=0.05)
    assert (tmp_path / "with" / "pretrain.jsonl").read_bytes() == (tmp_path / "without" / "pretrain.jsonl").read_bytes()
