"""Task YAMLs as lm-evaluation-harness reads them: documents from local files, Jinja prompts, few-shot contexts
written out by hand, lm-eval's seeded sampler, and one-line errors for bad keys, fields and shot counts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from lmstack.errors import LmstackError
from lmstack.eval.tasks import BUILTIN_DIR, Task

QA = [{"q": f"{i}+{i}", "a": str(2 * i)} for i in range(1, 7)]


def write_task(folder: Path, spec: dict, files: dict[str, list[dict]] | None = None, name: str = "t.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, rows in (files or {}).items():
        (folder / fname).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    path = folder / name
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def qa_spec(**over) -> dict:
    return {"task": "qa", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"train": "train.jsonl", "test": "test.jsonl"}},
            "test_split": "test", "fewshot_split": "train", "output_type": "generate_until",
            "doc_to_text": "Q: {{q}}\nA:", "doc_to_target": "{{a}}", **over}


def test_fewshot_context_is_lm_evals_string(tmp_path):
    path = write_task(tmp_path, qa_spec(num_fewshot=2, fewshot_config={"sampler": "first_n"},
                                        description="Answer the questions.\n\n"),
                      {"train.jsonl": QA[:3], "test.jsonl": QA[3:]})
    task = Task.load(str(path))
    (context, *_) = task.contexts(task.test_docs())
    assert context == "Answer the questions.\n\nQ: 1+1\nA: 2\n\nQ: 2+2\nA: 4\n\nQ: 4+4\nA:"
    assert task.contexts(task.test_docs(), 0)[0] == "Answer the questions.\n\nQ: 4+4\nA:"


def test_shots_from_the_test_split_leave_the_doc_out_and_follow_lm_evals_seeded_sampler(tmp_path):
    path = write_task(tmp_path, qa_spec(fewshot_split="test", num_fewshot=2, fewshot_seed=7),
                      {"train.jsonl": QA, "test.jsonl": QA})
    task = Task.load(str(path))
    docs = task.test_docs()
    rng = random.Random(7)  # lm-eval: one generator per task, k + 1 drawn per doc, the doc itself dropped
    for doc, context in zip(docs, task.contexts(docs)):
        drawn = [d for d in rng.sample(QA, 3) if d != doc.fields][:2]
        expected = "".join(f"Q: {d['q']}\nA: {d['a']}\n\n" for d in drawn) + f"Q: {doc.fields['q']}\nA:"
        assert context == expected
        assert f"Q: {doc.fields['q']}\nA: " not in context  # never its own answer
    first_n = Task.load(str(write_task(tmp_path, qa_spec(fewshot_split="test", num_fewshot=2,
                                                          fewshot_config={"sampler": "first_n"}), name="f.yaml")))
    contexts = first_n.contexts(first_n.test_docs())
    assert contexts[0] == "Q: 2+2\nA: 4\n\nQ: 3+3\nA: 6\n\nQ: 1+1\nA:"  # the first three minus the doc itself
    assert contexts[4] == "Q: 1+1\nA: 2\n\nQ: 2+2\nA: 4\n\nQ: 5+5\nA:"


def test_multiple_choice_shots_write_the_gold_choice_and_chat_template_makes_messages(tmp_path):
    rows = [{"question": "Capital?", "choices": ["Kell", "Amber"], "label": 1},
            {"question": "River?", "choices": ["Salt", "Kell"], "label": 0}]
    path = write_task(tmp_path, {"task": "mc", "dataset_path": "json",
                                 "dataset_kwargs": {"data_files": {"train": "d.jsonl", "test": "d.jsonl"}},
                                 "fewshot_split": "train", "output_type": "multiple_choice", "num_fewshot": 1,
                                 "fewshot_config": {"sampler": "first_n"}, "doc_to_text": "{{question}}",
                                 "doc_to_choice": "choices", "doc_to_target": "label"}, {"d.jsonl": rows})
    task = Task.load(str(path))
    docs = task.test_docs()
    assert task.contexts(docs)[1] == "Capital? Amber\n\nRiver?"
    assert task.doc_to_choice(docs[0]) == ["Kell", "Amber"] and task.gold_indices(docs[0], ["Kell", "Amber"]) == [1]
    chat = Task.load(str(write_task(tmp_path, qa_spec(chat_template=True, description="Be brief.", num_fewshot=1),
                                    {"train.jsonl": QA[:1], "test.jsonl": QA[1:]}, name="c.yaml")))
    assert chat.contexts(chat.test_docs())[0] == [{"role": "system", "content": "Be brief."},
                                                  {"role": "user", "content": "Q: 1+1\nA: 2\n\nQ: 2+2\nA:"}]


def test_doc_to_choice_template_and_list_and_text_target(tmp_path):
    rows = [{"q": "x", "opts": "a|b|c", "gold": "b"}]
    path = write_task(tmp_path, {"task": "m", "dataset_path": "d.jsonl", "output_type": "multiple_choice",
                                 "doc_to_text": "{{q}}", "doc_to_choice": "{{opts.split('|')}}",
                                 "doc_to_target": "gold"}, {"d.jsonl": rows})
    task = Task.load(str(path))
    (doc,) = task.test_docs()
    assert task.doc_to_choice(doc) == ["a", "b", "c"] and task.gold_indices(doc, ["a", "b", "c"]) == [1]
    listed = Task.load(str(write_task(tmp_path, {"task": "m", "dataset_path": "d.jsonl",
                                                 "output_type": "multiple_choice", "doc_to_text": "{{q}}",
                                                 "doc_to_choice": ["yes", "no"], "doc_to_target": "{{1}}"},
                                      name="l.yaml")))
    (doc,) = listed.test_docs()
    assert listed.doc_to_choice(doc) == ["yes", "no"] and listed.gold_indices(doc, ["yes", "no"]) == [1]


def test_file_formats_tsv_json_txt_and_include(tmp_path):
    (tmp_path / "d.tsv").write_text("q\ta\n1+1\t2\n2+2\t4\n", encoding="utf-8")
    (tmp_path / "d.json").write_text(json.dumps({"data": QA[:2]}), encoding="utf-8")
    (tmp_path / "d.txt").write_text("one line\n\nanother line\n", encoding="utf-8")
    base = write_task(tmp_path, qa_spec(dataset_path="d.tsv"), name="base.yaml")
    assert [d.fields for d in Task.load(str(base)).test_docs()] == [{"q": "1+1", "a": "2"}, {"q": "2+2", "a": "4"}]
    child = write_task(tmp_path, {"include": "base.yaml", "task": "child", "dataset_path": "d.json"}, name="c.yaml")
    task = Task.load(str(child))
    assert task.name == "child" and [d.fields for d in task.test_docs()] == QA[:2]
    assert task.spec.doc_to_text == "Q: {{q}}\nA:"  # inherited
    text = Task.load(str(write_task(tmp_path, qa_spec(dataset_path="d.txt", doc_to_target="{{text}}",
                                                      output_type="loglikelihood_rolling"), name="x.yaml")))
    assert [d.where for d in text.test_docs()] == [f"{tmp_path}/d.txt:1", f"{tmp_path}/d.txt:3"]


def test_relative_files_resolve_beside_the_yaml_then_in_data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text(json.dumps(QA[0]) + "\n", encoding="utf-8")
    path = write_task(tmp_path / "tasks", qa_spec(), {"train.jsonl": QA})
    task = Task.load(str(path), data_dir=data)
    assert [d.fields for d in task.test_docs()] == [QA[0]] and len(task.docs("train")) == len(QA)
    with pytest.raises(LmstackError, match=r"data file 'test.jsonl' not found \(looked in .*tasks/test.jsonl"):
        Task.load(str(path)).test_docs()


def test_unknown_key_names_it_and_lists_the_valid_ones(tmp_path):
    path = write_task(tmp_path, qa_spec(doc_to_txt="{{q}}"), {"test.jsonl": QA})
    with pytest.raises(LmstackError) as e:
        Task.load(str(path))
    message = str(e.value)
    assert "unknown config key 'doc_to_txt'" in message and "doc_to_text" in message and "\n" not in message
    with pytest.raises(LmstackError, match="generation_kwargs: unknown key.*top_k.*valid keys: until"):
        Task.load(str(write_task(tmp_path, qa_spec(generation_kwargs={"top_k": 3}), name="g.yaml")))
    with pytest.raises(LmstackError, match="generation_kwargs.max_gen_toks must be an integer >= 1, got 'many'"):
        Task.load(str(write_task(tmp_path, qa_spec(generation_kwargs={"max_gen_toks": "many"}), name="g.yaml")))
    with pytest.raises(LmstackError, match="output_type 'ranking' is not one of multiple_choice"):
        Task.load(str(write_task(tmp_path, qa_spec(output_type="ranking"), name="g.yaml")))


def test_missing_field_names_task_field_and_file_line(tmp_path):
    rows = [{"q": "1+1", "a": "2"}, {"q": "2+2"}]
    path = write_task(tmp_path, qa_spec(dataset_path="d.jsonl", fewshot_split=None), {"d.jsonl": rows})
    task = Task.load(str(path))
    docs = task.test_docs()
    assert task.references(docs[0]) == ["2"]
    with pytest.raises(LmstackError) as e:
        task.references(docs[1])
    assert str(e.value) == (f"{path}: task qa: doc_to_target: 'a' is undefined in the document at "
                            f"{tmp_path}/d.jsonl:2 (its fields: q)")


def test_too_many_shots_is_one_line(tmp_path):
    path = write_task(tmp_path, qa_spec(num_fewshot=3), {"train.jsonl": QA[:3], "test.jsonl": QA[3:]})
    task = Task.load(str(path))
    task.contexts(task.test_docs())  # 3 of 3: fine
    with pytest.raises(LmstackError, match="4-shot needs 4 examples but few-shot split 'train' holds 3"):
        task.contexts(task.test_docs(), 4)
    same = Task.load(str(write_task(tmp_path, qa_spec(fewshot_split="test"), name="s.yaml")))
    with pytest.raises(LmstackError, match=r"3-shot needs 4 examples \(k \+ 1.*holds 3"):
        same.check_fewshot(3)


def test_builtin_tasks_load():
    names = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
    assert "world_mc" in names
    for name in names:
        assert Task.load(name).name == name
    with pytest.raises(LmstackError, match="neither a YAML file nor a built-in task.*world_mc"):
        Task.load("no_such_task")
