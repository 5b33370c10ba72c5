import json

import pytest

from lmstack.errors import LmstackError
from lmstack.qa.squad import Answer, SquadExample, locate, read_squad, split_by_context, write_predictions, write_squad

CONTEXT = "Normandy is a region in France. France is in Europe."


def squad(qas, context=CONTEXT):
    return {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}


def test_locate_keeps_a_right_offset_and_repairs_a_wrong_one_to_the_nearest():
    assert locate(CONTEXT, "France", 24) == 24
    assert locate(CONTEXT, "France", 30) == 32  # nearest of 24 and 32
    assert locate(CONTEXT, "France", 0) == 24
    assert locate(CONTEXT, "Spain", 3) == -1


def test_read_repairs_offsets_counts_skips_and_keeps_unlocated_answers_for_scoring(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(squad([
        {"id": "1", "question": "Where?", "answers": [{"text": "France", "answer_start": 24}]},
        {"id": "2", "question": "Where again?", "answers": [{"text": "France", "answer_start": 3}]},
        {"id": "3", "question": "Which country?", "answers": [{"text": "Spain", "answer_start": 0}]},
        {"id": "4", "question": "  ", "answers": []},
        {"id": "5", "question": "Who?", "answers": [], "plausible_answers": [], "is_impossible": True},
    ])), encoding="utf-8")
    examples, report = read_squad(path)
    assert [ex.id for ex in examples] == ["1", "2", "3", "5"]
    assert examples[1].answers[0].start == 24
    assert examples[2].answers == [Answer("Spain", -1)]
    assert examples[3].is_impossible and examples[3].answers == []
    assert (report.repaired_offsets, report.unlocated_answers, report.empty_questions) == (1, 1, 1)
    assert report.questions == 4


def test_a_missing_field_is_one_line_naming_file_and_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(squad([{"id": "1", "answers": []}])), encoding="utf-8")
    where = r"bad\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]"
    with pytest.raises(LmstackError, match=where + ": missing field 'question'"):
        read_squad(path)
    path.write_text('{"id": "1", "question": "q", "answers": []}\n', encoding="utf-8")
    jsonl = path.rename(tmp_path / "bad.jsonl")
    with pytest.raises(LmstackError, match=r"bad\.jsonl:1: missing field 'context'"):
        read_squad(jsonl)
    (tmp_path / "x.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(LmstackError, match="not SQuAD format"):
        read_squad(tmp_path / "x.json")


def test_write_then_read_round_trips(tmp_path):
    examples = [SquadExample("a", "Where?", CONTEXT, [Answer("France", 24)]),
                SquadExample("b", "Who?", CONTEXT, [], is_impossible=True),
                SquadExample("c", "哪里？", "它在北京。", [Answer("北京", 2)], lang="zh")]
    write_squad(tmp_path / "out.json", examples)
    back, report = read_squad(tmp_path / "out.json")
    assert back == examples
    assert report.repaired_offsets == report.unlocated_answers == 0
    write_predictions(tmp_path / "p.json", {"a": "France", "b": ""})
    assert json.loads((tmp_path / "p.json").read_text(encoding="utf-8")) == {"a": "France", "b": ""}


def test_split_keeps_each_context_on_one_side():
    examples = [SquadExample(f"{c}-{i}", "q", f"context {c}") for c in range(10) for i in range(3)]
    train, test = split_by_context(examples, 0.3, seed=1)
    assert len(test) == 9 and len(train) == 21
    assert not {ex.context for ex in train} & {ex.context for ex in test}
    assert split_by_context(examples, 0.3, seed=1) == (train, test)


def test_real_files_read_with_their_known_repairs(shared_data):
    examples, report = read_squad(shared_data / "cmrc2018" / "cmrc2018_trial.json")
    assert report.repaired_offsets == 5 and report.unlocated_answers == 0  # the README's 5 bad offsets
    assert all(ex.lang == "zh" for ex in examples)
    assert all(ex.context[a.start:a.start + len(a.text)] == a.text for ex in examples for a in ex.answers)
    examples, report = read_squad(shared_data / "squad_v2_dev_subset_haystack" / "small.json")
    assert sum(ex.is_impossible for ex in examples) == 333 and report.questions == 626
