"""``lmstack evaluate`` end to end with a fake model: a shot sweep gives one result per k and a plot, a group of
tasks a methods chart, report.json keeps every sample, partial results survive a failing task, bad input is one
line before anything is written; and through ``lmstack.cli.main`` once registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lmstack import cli
from lmstack.errors import LmstackError
from lmstack.eval import evaluate_command
from lmstack.eval.evaluate_command import evaluate, parse_shots
from lmstack.eval.lm import GenRequest

QA = [{"q": f"{i} plus {i}", "a": str(2 * i)} for i in range(1, 9)]


class FakeLM:
    """Answers right when the prompt holds at least two shots, else wrong; fails on demand."""
    name = "fake"

    def __init__(self, fail_on: str | None = None):
        self.fail_on = fail_on

    def loglikelihood(self, requests):
        raise LmstackError("http://x/v1/completions returned no logprobs with echo and max_tokens 0")

    def loglikelihood_rolling(self, texts):
        return [(-1.0, 1) for _ in texts]

    def generate_until(self, requests: list[GenRequest]):
        out = []
        for r in requests:
            if self.fail_on and self.fail_on in r.context:
                raise LmstackError("the server went away")
            a = int(r.context.rsplit("Q: ", 1)[1].split()[0])
            shots = r.context.count("\nA: ")
            out.append([f"The answer is {2 * a if shots >= 2 else a}."] * r.n)
        return out


def task_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA), encoding="utf-8")
    base = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"train": "qa.jsonl", "test": "qa.jsonl"}},
            "output_type": "generate_until", "doc_to_text": "Q: {{q}}\nA:", "doc_to_target": "{{a}}",
            "fewshot_config": {"sampler": "first_n"}, "generation_kwargs": {"until": ["\n"]},
            "group": "arith", "metric_list": [{"metric": "exact_match", "regexes_to_ignore": ["\\.$"]}]}
    specs = {
        "direct": {**base, "task": "direct", "filter_list": [{"name": "flexible-extract",
                                                              "filter": [{"function": "last_number"}]}]},
        "strict": {**base, "task": "strict", "num_fewshot": 2, "filter_list": [
            {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": "The answer is (\\d+)"}]}]},
        "ppl": {"task": "ppl", "dataset_path": "qa.jsonl", "test_split": "x", "output_type": "loglikelihood_rolling",
                "doc_to_target": "{{q}}"},
    }
    paths = {}
    for name, spec in specs.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(spec), encoding="utf-8")
    return paths


@pytest.fixture
def fake(monkeypatch):
    made = {}

    def open_lm(model=None, adapter=None, base_url=None, **kw):
        made["lm"] = FakeLM(made.get("fail_on"))
        made["kw"] = {"model": model, "base_url": base_url, **kw}
        return made["lm"]

    monkeypatch.setattr(evaluate_command, "open_lm", open_lm)
    return made


def test_shot_sweep_gives_one_result_per_k_and_a_plot(tmp_path, fake):
    paths = task_files(tmp_path / "tasks")
    out = tmp_path / "out"
    result = evaluate([str(paths["direct"])], model="m", shots="0,1,2,4", out=out, limit=5)
    assert result["results"] == {f"direct@{k}": {"exact_match,flexible-extract": 1.0 if k >= 2 else 0.0}
                                 for k in (0, 1, 2, 4)}  # under 2 shots the fake answers a, not 2a
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["num_fewshot"] for r in report["results"]] == [0, 1, 2, 4]
    assert all(r["n"] == 5 and len(r["samples"]) == 5 for r in report["results"])
    sample = report["results"][2]["samples"][0]
    assert sample["context"] == "Q: 2 plus 2\nA: 4\n\nQ: 3 plus 3\nA: 6\n\nQ: 1 plus 1\nA:"
    assert sample["outputs"] == ["The answer is 2."] and sample["filtered"] == {"flexible-extract": "2."}
    assert sample["scores"] == {"exact_match,flexible-extract": 1.0} and sample["target"] == ["2"]
    png = out / "accuracy_vs_shots.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| direct | 4 | exact_match,flexible-extract | 1.0000 |" in md
    assert fake["kw"] == {"model": "m", "base_url": None, "batch_size": 8}


def test_group_of_methods_gets_a_bar_chart_and_invalid_answers_are_counted(tmp_path, fake):
    paths = task_files(tmp_path / "tasks")
    out = tmp_path / "out"
    result = evaluate([str(paths["direct"]), str(paths["strict"])], model="m", samples=3, out=out)
    assert result["results"]["strict@2"] == {"exact_match,strict-match": 1.0}
    assert (out / "methods_arith.png").is_file() and not (out / "accuracy_vs_shots.png").exists()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert {r["repeats"] for r in report["results"]} == {3}  # --samples: K outputs per prompt
    assert report["results"][1]["invalid"] == {"strict-match": 0}
    with pytest.raises(LmstackError, match="report.json exists"):
        evaluate([str(paths["direct"])], model="m", out=out)
    evaluate([str(paths["direct"])], model="m", out=out, overwrite=True)


def test_partial_results_are_kept_when_a_later_task_fails(tmp_path, fake):
    paths = task_files(tmp_path / "tasks")
    out = tmp_path / "out"
    fake["fail_on"] = "Q: 2 plus 2\nA: 4\n\nQ: 3 plus 3\nA: 6\n\nQ: 1 plus 1"  # only in the 2-shot prompt
    with pytest.raises(LmstackError, match="the server went away"):
        evaluate([str(paths["direct"])], model="m", shots="0,1,2", out=out)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["num_fewshot"] for r in report["results"]] == [0, 1]


def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, fake):
    paths = task_files(tmp_path / "tasks")
    out = tmp_path / "out"
    with pytest.raises(LmstackError, match="9-shot needs 10 examples"):
        evaluate([str(paths["direct"])], model="m", shots="0,9", out=out)
    with pytest.raises(LmstackError, match="--shots: expected comma-separated counts"):
        evaluate([str(paths["direct"])], model="m", shots="0,two", out=out)
    with pytest.raises(LmstackError, match="shots must be 0"):
        evaluate([str(paths["ppl"])], model="m", shots="1", out=out)
    assert not out.exists() and "lm" not in fake
    assert parse_shots("0,1,1,2") == [0, 1, 2] and parse_shots(None) == [None]


def test_through_the_cli_with_json(tmp_path, fake, monkeypatch, capsys):
    paths = task_files(tmp_path / "tasks")
    monkeypatch.setitem(cli.COMMANDS, "evaluate", ("lmstack.eval.evaluate_command:evaluate", "evaluate tasks"))
    cli.main(["evaluate", str(paths["ppl"]), str(paths["strict"]), "--model", "m", "--out", str(tmp_path / "o"),
              "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["results"]["ppl@0"]["bits_per_byte,none"] > 0
    assert result["results"]["strict@2"] == {"exact_match,strict-match": 1.0}
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", "no_such_task", "--model", "m", "--out", str(tmp_path / "o2")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lmstack evaluate: error: task 'no_such_task': neither") and err.count("\n") == 1


def test_a_likelihood_failure_from_the_server_is_one_line(tmp_path, fake, monkeypatch, capsys):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "mc.jsonl").write_text(json.dumps({"q": "x", "c": ["a", "b"], "l": 0}) + "\n", encoding="utf-8")
    (folder / "mc.yaml").write_text(yaml.safe_dump({"task": "mc", "dataset_path": "mc.jsonl", "test_split": "t",
                                                    "output_type": "multiple_choice", "doc_to_text": "{{q}}",
                                                    "doc_to_choice": "c", "doc_to_target": "l"}), encoding="utf-8")
    monkeypatch.setitem(cli.COMMANDS, "evaluate", ("lmstack.eval.evaluate_command:evaluate", "evaluate tasks"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", str(folder / "mc.yaml"), "--base-url", "http://x", "--out", str(tmp_path / "o")])
    assert stop.value.code == 2 and "returned no logprobs" in capsys.readouterr().err
    assert fake["kw"]["base_url"] == "http://x" and fake["kw"]["chat"] is False


def test_a_field_missing_in_a_later_doc_stops_before_the_model_opens(tmp_path, fake):
    folder = tmp_path / "tasks"
    paths = task_files(folder)
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*QA, {"q": "9 plus 9"}]),
                                     encoding="utf-8")
    with pytest.raises(LmstackError, match=r"doc_to_target: 'a' is undefined in the document at .*qa.jsonl:9"):
        evaluate([str(paths["direct"])], model="m", out=tmp_path / "out")
    assert "lm" not in fake and not (tmp_path / "out").exists()
