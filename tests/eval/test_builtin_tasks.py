"""The built-in task YAMLs (lmstack/eval/tasks/*.yaml): they load as tasks, their documents are there (after
``synth`` for the world's tasks, under ../shared/data for the real ones), every prompt renders, and the filters read
every gold answer back (so a model that writes the reference scores 100%, and a wrong one 0%)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from lmstack.data.synth import synth
from lmstack.eval.filters import INVALID, build_filter
from lmstack.eval.metrics import CORPUS_METRICS, METRIC_OPTIONS, exact_match, sample_metric
from lmstack.eval.tasks import BUILTIN_DIR, Task, TaskSpec

YAMLS = sorted(BUILTIN_DIR.glob("*.yaml"))
WORLD = {"world_arith_direct", "world_arith_cot", "world_arith_sc", "world_arith_zeroshot_cot", "world_mc",
         "world_translate_en_zh", "world_translate_zh_en", "world_summary"}
# the real files' tasks -> (documents, references of the first one) in ../shared/data
REAL = {"gsm8k": (7473, 1), "gsm8k_cot": (7473, 1), "cmrc2018": (1002, 1), "squad_v2_subset": (626, 4),
        "wmt16_en_fi": (3000, 2), "dialogsum": (500, 1), "csl_summary": (1000, 1)}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    synth(out, seed=0, scale=0.05)
    return out


def filters(task: Task) -> dict:
    return {f["name"]: build_filter(f["filter"], f"{task.spec.task}.filter_list") for f in task.spec.filter_list}


def exact_match_options(task: Task) -> dict:
    [metric] = [m for m in task.spec.metric_list if m["metric"] == "exact_match"]
    return {k: v for k, v in metric.items() if k not in ("metric", *METRIC_OPTIONS)}


def test_the_built_in_set():
    assert {p.stem for p in YAMLS} == WORLD | set(REAL)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_yaml_uses_task_keys_and_its_filters_and_metrics_build(path):
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(spec) <= {f.name for f in fields(TaskSpec)} and spec["task"] == path.stem
    for f in spec.get("filter_list", []):
        build_filter(f["filter"], f"{path.name}: {f['name']}")
    for m in spec["metric_list"]:
        if m["metric"] not in CORPUS_METRICS:
            sample_metric(m["metric"], lang=spec.get("lang", "en"),
                          **{k: v for k, v in m.items() if k not in ("metric", *METRIC_OPTIONS)})
    if spec["output_type"] == "generate_until":
        assert spec["generation_kwargs"]["until"]
    if spec.get("repeats", 1) > 1:  # self-consistency samples, it does not repeat greedy decoding
        assert spec["generation_kwargs"]["do_sample"] and any(
            s["function"] == "majority_vote" for f in spec["filter_list"] for s in f["filter"])


@pytest.mark.parametrize("name", sorted(WORLD))
def test_world_tasks_read_synth_files_and_render_every_document(world_dir, name):
    task = Task.load(name, data_dir=world_dir)
    docs = task.test_docs()
    assert len(docs) >= 20
    contexts = task.contexts(docs)
    assert all(c.strip() and "{{" not in c for c in contexts)
    for doc in docs:
        if task.spec.output_type == "multiple_choice":
            choices = task.doc_to_choice(doc)
            assert len(choices) == 4 and choices[task.doc_to_target(doc)] == doc.fields["choices"][doc.fields["label"]]
        else:
            assert all(r.strip() for r in task.references(doc))
    zh = next(i for i, d in enumerate(docs) if d.fields.get("lang", "zh") == "zh")
    prompt = contexts[zh].rsplit(task.spec.fewshot_delimiter, 1)[-1]  # the doc's own part, after any shots
    assert prompt.isascii() == (name == "world_translate_en_zh")


@pytest.mark.parametrize("name", ["world_arith_cot", "world_arith_sc", "world_arith_zeroshot_cot"])
def test_cot_filters_read_every_worked_solution_back_and_reject_a_wrong_one(world_dir, name):
    task = Task.load(name, data_dir=world_dir)
    options, pipelines = exact_match_options(task), filters(task)
    for doc in task.test_docs():
        solution, target = doc.fields["solution"], doc.fields["target"]
        [reference] = task.references(doc)
        wrong = solution.replace(f" {target}", f" {int(target) + 1}")
        for label, pipeline in pipelines.items():
            assert pipeline([solution] * task.spec.repeats).rstrip(".") == target, (label, doc)
            assert exact_match(pipeline([solution]), [reference], **options) == 1.0, (label, doc)
            assert exact_match(pipeline([wrong]), [reference], **options) == 0.0, (label, wrong)
        first = pipelines.get("strict-match", pipelines.get("score-first"))
        assert first(["I do not know."]) == INVALID


def test_self_consistency_votes_for_the_most_common_answer(world_dir):
    pipelines = filters(Task.load("world_arith_sc", data_dir=world_dir))
    outputs = ["5 + 3 = 8. The answer is 8."] * 3 + ["5 + 3 = 9. The answer is 9."] * 4 + ["no idea"]
    assert pipelines["score-first"](outputs) == "8"
    assert pipelines["maj@8"](outputs) == "9"
    assert pipelines["maj@8-flexible"](["答案是 12。"] * 2 + ["It is 7"]) == "12"
    assert pipelines["maj@8"](["no idea"] * 8) == INVALID


def test_direct_filters_take_the_number(world_dir):
    task = Task.load("world_arith_direct", data_dir=world_dir)
    options, pipelines = exact_match_options(task), filters(task)
    for doc in task.test_docs():
        assert task.references(doc) == [doc.fields["target"]]
        for pipeline in pipelines.values():
            assert exact_match(pipeline([f" {doc.fields['target']}"]), task.references(doc), **options) == 1.0
    assert exact_match(pipelines["strict-match"]([" 12 apples"]), ["12"], **options) == 0.0
    assert exact_match(pipelines["flexible-extract"]([" 12 apples"]), ["12"], **options) == 1.0


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_tasks_read_the_shared_files(shared_data, name):
    task = Task.load(name, data_dir=shared_data)
    docs = task.test_docs()
    n_docs, n_refs = REAL[name]
    assert len(docs) == n_docs and len(task.references(docs[0])) == n_refs
    assert all(c.strip() for c in task.contexts(docs[:3]))


def test_gsm8k_gold_solutions_score_100_percent(shared_data):
    """lm-eval's gsm8k filters on the gold answers of ../shared/data/gsm8k/train.jsonl: every one is read back."""
    task = Task.load("gsm8k", data_dir=shared_data)
    options, pipelines = exact_match_options(task), filters(task)
    docs = task.test_docs()
    for label, pipeline in pipelines.items():
        scores = [exact_match(pipeline([" " + d.fields["answer"]]), task.references(d), **options) for d in docs]
        assert sum(scores) == len(docs) == 7473, label


def test_gsm8k_cot_prompt_is_lm_evals_eight_exemplars(shared_data):
    task = Task.load("gsm8k_cot", data_dir=shared_data)
    doc = task.test_docs()[0]
    assert task.references(doc) == ["72"]
    context = task.contexts([doc])[0]
    shots = context.split("\n\n")
    assert len(shots) == 9 and shots[-1] == f"Q: {doc.fields['question']}\nA:"
    assert shots[0] == ("Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
                        "After they are done, there will be 21 trees. How many trees did the grove workers plant "
                        "today?\nA: There are 15 trees originally. Then there were 21 trees after some more were "
                        "planted. So there must have been 21 - 15 = 6. The answer is 6.")
    strict = filters(task)["strict-match"]
    assert [strict([s]) for s in shots[:8]] == ["6", "5", "39", "8", "9", "29", "33", "8"]
