import json

import pytest

from lmstack.errors import LmstackError
from lmstack.qa.reader import (
    Reader,
    ReaderSettings,
    new_reader,
    qa_eval,
    score_predictions,
    train_reader,
    train_reader_model,
)


def english_people(examples, n):
    return [ex for ex in examples if ex.lang == "en" and ex.passage_id.startswith("person")][:n]


def test_a_tiny_reader_learns_to_point_at_answers(synth_qa, tmp_path):
    examples = english_people(synth_qa["train"], 64)
    reader = new_reader(examples, vocab_size=400, settings=ReaderSettings(max_len=80), seed=0, n_embd=64)
    before = score_predictions(examples, reader.predict(examples, null_threshold=None))
    figures = train_reader_model(reader, examples, epochs=16, batch_size=16, lr=3e-3, seed=0)
    after = reader.predict(examples, null_threshold=None)
    scored = score_predictions(examples, after)
    assert figures["loss_last"] < figures["loss_first"] / 3
    assert before["exact"] < 10 and scored["exact"] > 50, (before, scored)
    reader.save(tmp_path / "r")
    again = Reader.load(tmp_path / "r").predict(examples[:8], null_threshold=None)
    assert {q: p.text for q, p in again.items()} == {ex.id: after[ex.id].text for ex in examples[:8]}
    assert json.loads((tmp_path / "r" / "reader.json").read_text())["max_len"] == 80


def write_jsonl(path, examples):
    rows = [{"id": ex.id, "question": ex.question, "context": ex.context, "lang": ex.lang,
             "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers],
             "is_impossible": ex.is_impossible} for ex in examples]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_train_reader_and_qa_eval_report_figures_and_write_predictions(synth_qa, tmp_path):
    examples = [ex for ex in synth_qa["train"] if ex.passage_id.startswith("person")][:40]
    data = write_jsonl(tmp_path / "qa.jsonl", examples)
    trained = train_reader(data, out=tmp_path / "reader", vocab_size=400, max_len=96, epochs=1, holdout=0.25)
    assert trained["examples"] < 40 and trained["steps"] >= 1 and trained["read"]["questions"] == 40
    figures = qa_eval(data, tmp_path / "reader", holdout=0.25, predictions=tmp_path / "pred.json")
    assert figures["questions"] == 40 - trained["examples"]
    assert 0 <= figures["exact"] <= figures["f1"] <= 100 and figures["total"] == figures["questions"]
    predictions = json.loads((tmp_path / "pred.json").read_text(encoding="utf-8"))
    assert len(predictions) == figures["questions"]
    with pytest.raises(LmstackError, match="file not found"):
        qa_eval(tmp_path / "missing.jsonl", tmp_path / "reader")


def test_v2_threshold_is_saved_and_v1_data_always_answers(synth_qa, tmp_path):
    with_none = [ex for ex in synth_qa["train"] if ex.is_impossible][:4] + english_people(synth_qa["train"], 8)
    only_answerable = [ex for ex in english_people(synth_qa["train"], 20) if ex.answers][:8]
    a = train_reader(write_jsonl(tmp_path / "v2.jsonl", with_none), out=tmp_path / "v2", vocab_size=300,
                     max_len=96, epochs=1)
    b = train_reader(write_jsonl(tmp_path / "v1.jsonl", only_answerable), out=tmp_path / "v1", vocab_size=300,
                     max_len=96, epochs=1)
    assert a["steps"] == b["steps"] == 1
    assert Reader.load(tmp_path / "v2").settings.null_threshold == 0.0
    assert Reader.load(tmp_path / "v1").settings.null_threshold is None
    assert all(p.text for p in Reader.load(tmp_path / "v1").predict(only_answerable).values())


def test_train_reader_and_qa_eval_from_the_command_line(synth_qa, tmp_path, capsys):
    from lmstack.cli import main

    data = write_jsonl(tmp_path / "qa.jsonl", [ex for ex in synth_qa["train"] if ex.lang == "zh"][:24])
    main(["train-reader", str(data), "--out", str(tmp_path / "r"), "--tokenizer", "char", "--epochs", "1",
          "--max-len", "96", "--n-embd", "32", "--json"])
    assert json.loads(capsys.readouterr().out)["examples"] == 24
    main(["qa-eval", str(data), "--reader", str(tmp_path / "r"), "--json"])
    figures = json.loads(capsys.readouterr().out)
    assert figures["questions"] == figures["total"] == 24 and 0 <= figures["exact"] <= figures["f1"] <= 100
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "context": "c", "answers": []}\n', encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["qa-eval", str(bad), "--reader", str(tmp_path / "r")])
    assert capsys.readouterr().err.strip() == f"lmstack qa-eval: error: {bad}:1: missing field 'question'"
