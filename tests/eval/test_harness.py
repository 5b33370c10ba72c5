"""The harness loop with fake models whose answers are known: exact accuracies for multiple choice (acc vs
acc_norm where they differ), generate-until per filter with an invalid answer counted, self-consistency's K
samples and vote, corpus metrics equal to sacrebleu's, rolling perplexities by lm-eval's formulas; and a real tiny
model's multiple-choice scores equal to its own log-probabilities."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import sacrebleu
import torch
import yaml

from lmstack.errors import LmstackError
from lmstack.eval.harness import plan, run
from lmstack.eval.lm import GenRequest, LocalLM
from lmstack.eval.metrics import bootstrap_ci
from lmstack.eval.tasks import Task
from lmstack.model import build_model, preset
from lmstack.model.scoring import token_logprobs
from lmstack.text.tokenizer import train_bpe


def write_task(folder: Path, spec: dict, files: dict[str, list[dict]]) -> Path:
    for fname, rows in files.items():
        (folder / fname).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (folder / "t.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return folder / "t.yaml"


class FakeLM:
    """Log-likelihoods from a table keyed by continuation; generations from a function of the request."""
    name = "fake"

    def __init__(self, lls: dict[str, float] | None = None, answer=None):
        self.lls, self.answer, self.requests = lls or {}, answer, []

    def loglikelihood(self, requests):
        self.requests += requests
        return [(self.lls[cont], False) for _, cont in requests]

    def loglikelihood_rolling(self, texts):
        return [(-0.5 * len(t), len(t)) for t in texts]

    def generate_until(self, requests: list[GenRequest]):
        self.requests += requests
        return [self.answer(r) for r in requests]


MC_ROWS = [  # acc picks the likeliest sum, acc_norm the likeliest per character
    {"q": "a", "choices": ["x", "yyyy"], "label": 0},     # x: -2 vs yyyy: -3 -> acc: x (right), norm: yyyy (wrong)
    {"q": "b", "choices": ["x", "yyyy"], "label": 1},     # acc wrong, norm right
    {"q": "c", "choices": ["zz", "x"], "label": 1},       # zz -5 (-2.5/char) vs x -2: both right
    {"q": "d", "choices": ["zz", "wwwwww"], "label": 0},  # zz -5 vs w -6 (-1/char): acc right, norm wrong
]
MC_LLS = {" x": -2.0, " yyyy": -3.0, " zz": -5.0, " wwwwww": -6.0}


def mc_task(tmp_path, **over) -> Task:
    path = write_task(tmp_path, {"task": "mc", "dataset_path": "d.jsonl", "output_type": "multiple_choice",
                                 "doc_to_text": "Q: {{q}}\nA:", "doc_to_choice": "choices", "doc_to_target": "label",
                                 **over}, {"d.jsonl": MC_ROWS})
    return Task.load(str(path))


def test_multiple_choice_acc_and_acc_norm_exactly(tmp_path):
    lm = FakeLM(MC_LLS)
    result = run(plan(mc_task(tmp_path)), lm)
    assert result["metrics"]["acc,none"]["value"] == 0.75
    assert result["metrics"]["acc_norm,none"]["value"] == 0.5
    assert lm.requests[:2] == [("Q: a\nA:", " x"), ("Q: a\nA:", " yyyy")]  # target_delimiter + choice
    first = result["samples"][0]
    assert first["predictions"] == {"acc": 0, "acc_norm": 1} and first["scores"] == {"acc": 1.0, "acc_norm": 0.0}
    assert first["loglikelihoods"] == [-2.0, -3.0] and first["target"] == [0]
    mean, low, high = bootstrap_ci([1.0, 0.0, 1.0, 1.0], seed=0)
    assert result["metrics"]["acc,none"]["ci95"] == [low, high]
    assert result["metrics"]["acc,none"]["stderr"] == pytest.approx(0.5 / 2)  # std(ddof=1) / sqrt(n)


def test_acc_bytes_normalises_by_utf8_bytes(tmp_path):
    rows = [{"q": "a", "choices": ["贝尔", "abcd"], "label": 0}]  # 2 characters but 6 bytes vs 4 bytes
    path = write_task(tmp_path, {"task": "b", "dataset_path": "b.jsonl", "output_type": "multiple_choice",
                                 "doc_to_text": "{{q}}", "doc_to_choice": "choices", "doc_to_target": "label",
                                 "metric_list": [{"metric": "acc_norm"}, {"metric": "acc_bytes"}]}, {"b.jsonl": rows})
    lm = FakeLM({" 贝尔": -3.0, " abcd": -5.0})  # per char: -1.5 vs -1.25 (abcd); per byte: -0.5 vs -1.25 (贝尔)
    metrics = run(plan(Task.load(str(path))), lm)["metrics"]
    assert metrics["acc_norm,none"]["value"] == 0.0 and metrics["acc_bytes,none"]["value"] == 1.0


ARITH = [{"question": f"{a} plus {a}?", "answer": str(2 * a)} for a in range(1, 6)]


def gen_task(tmp_path, **over) -> Task:
    spec = {"task": "arith", "dataset_path": "a.jsonl", "output_type": "generate_until",
            "doc_to_text": "Q: {{question}}\nA:", "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 20},
            "filter_list": [{"name": "strict-match", "filter": [
                                {"function": "regex", "regex_pattern": "The answer is (\\-?[0-9]+)"},
                                {"function": "take_first"}]},
                            {"name": "flexible-extract", "filter": [{"function": "last_number"},
                                                                    {"function": "take_first"}]}],
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                             "regexes_to_ignore": ["\\.$"]}], **over}  # "2." (flexible-extract's) -> "2"
    return Task.load(str(write_task(tmp_path, spec, {"a.jsonl": ARITH})))


def arith_answer(r: GenRequest) -> list[str]:
    a = int(r.context.split()[1])  # "Q: 3 plus 3?\nA:"
    return {1: ["The answer is 2."], 2: ["The answer is 5."], 3: ["it is 6"], 4: ["so 3 and then 8"],
            5: ["no idea"]}[a] * r.n


def test_generate_until_scores_each_filter_and_counts_invalid_answers(tmp_path):
    lm = FakeLM(answer=arith_answer)
    result = run(plan(gen_task(tmp_path)), lm)
    assert result["metrics"]["exact_match,strict-match"]["value"] == pytest.approx(1 / 5)  # only "2"
    assert result["metrics"]["exact_match,flexible-extract"]["value"] == pytest.approx(3 / 5)  # 2, 6, 8
    assert result["invalid"] == {"strict-match": 3, "flexible-extract": 1}
    assert lm.requests[0].until == ["\n"] and lm.requests[0].max_gen_toks == 20 and lm.requests[0].n == 1
    last = result["samples"][-1]
    assert last["filtered"] == {"strict-match": "[invalid]", "flexible-extract": "[invalid]"}
    assert last["scores"] == {"exact_match,strict-match": 0.0, "exact_match,flexible-extract": 0.0}
    assert last["outputs"] == ["no idea"] and last["target"] == ["10"]


def test_self_consistency_asks_k_samples_of_one_request_and_votes(tmp_path):
    votes = ["The answer is 4.", "The answer is 3.", "The answer is 4.", "The answer is 9."]
    lm = FakeLM(answer=lambda r: (votes * 2)[:r.n])
    task = gen_task(tmp_path, generation_kwargs={"until": ["\n"], "do_sample": True, "temperature": 0.7},
                    repeats=4, filter_list=[
                        {"name": "maj", "filter": [{"function": "regex", "regex_pattern": "The answer is (\\d+)"},
                                                   {"function": "majority_vote"}, {"function": "take_first"}]},
                        {"name": "first", "filter": [{"function": "regex", "regex_pattern": "The answer is (\\d+)"},
                                                     {"function": "take_first"}]}])
    result = run(plan(task), lm, seed=3)
    assert [(r.n, r.do_sample, r.temperature, r.seed) for r in lm.requests] == [(4, True, 0.7, 3)] * 5
    assert result["metrics"]["exact_match,maj"]["value"] == pytest.approx(1 / 5)  # 4 wins the vote: doc "2 plus 2"
    assert result["metrics"]["exact_match,first"]["value"] == pytest.approx(1 / 5)
    assert result["samples"][1]["filtered"]["maj"] == "4" and len(result["samples"][1]["outputs"]) == 4
    lm.requests.clear()
    run(plan(task), lm, samples=8)  # --samples overrides repeats
    assert {r.n for r in lm.requests} == {8}


def test_corpus_metrics_match_sacrebleu_with_signature(tmp_path):
    outputs = {1: "two is the sum", 2: "four it is", 3: "six", 4: "eight or so", 5: "ten"}
    lm = FakeLM(answer=lambda r: [outputs[int(r.context.split()[1])]])
    task = gen_task(tmp_path, doc_to_target="{{answer}} is the sum", filter_list=[],
                    metric_list=[{"metric": "bleu"}, {"metric": "chrf"}])
    metrics = run(plan(task), lm)["metrics"]
    hyps = [outputs[i] for i in range(1, 6)]
    refs = [[f"{2 * i} is the sum" for i in range(1, 6)]]
    assert metrics["bleu,none"]["value"] == pytest.approx(sacrebleu.corpus_bleu(hyps, refs).score)
    assert metrics["chrf,none"]["value"] == pytest.approx(sacrebleu.corpus_chrf(hyps, refs).score)
    assert metrics["bleu,none"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    low, high = metrics["chrf,none"]["ci95"]
    assert 0 <= low <= metrics["chrf,none"]["value"] <= high <= 100 and low < high


def test_rolling_loglikelihood_perplexities_are_lm_evals(tmp_path):
    texts = [{"text": "one two three"}, {"text": "凯尔 河镇"}]
    path = write_task(tmp_path, {"task": "ppl", "dataset_path": "p.jsonl", "output_type": "loglikelihood_rolling",
                                 "doc_to_text": "", "doc_to_target": "{{text}}"}, {"p.jsonl": texts})
    result = run(plan(Task.load(str(path))), FakeLM())
    total = -0.5 * (13 + 5)
    n_bytes = 13 + len("凯尔 河镇".encode())
    m = result["metrics"]
    assert m["word_perplexity,none"]["value"] == pytest.approx(math.exp(-total / 5))
    assert m["byte_perplexity,none"]["value"] == pytest.approx(math.exp(-total / n_bytes))
    assert m["bits_per_byte,none"]["value"] == pytest.approx(-total / n_bytes / math.log(2))


def test_bad_metric_or_filter_is_named_before_running(tmp_path):
    with pytest.raises(LmstackError, match="metric 'bleu' does not apply to multiple_choice"):
        plan(mc_task(tmp_path, metric_list=[{"metric": "bleu"}]))
    with pytest.raises(LmstackError, match="unknown filter function 'regexp'"):
        plan(gen_task(tmp_path, filter_list=[{"name": "x", "filter": [{"function": "regexp"}]}]))
    with pytest.raises(LmstackError, match="exact_match.*unknown option.*ignore_cases"):
        plan(gen_task(tmp_path, metric_list=[{"metric": "exact_match", "ignore_cases": True}]))


def test_real_tiny_model_choice_scores_are_its_log_probabilities(tmp_path):
    text = ["Q: a\nA: x yyyy zz wwwwww", "Q: b\nA: zz x", "Q: c d\nA: yyyy"] * 10
    tokenizer = train_bpe(text, vocab_size=300)
    torch.manual_seed(0)
    model = build_model(preset("gpt2-tiny", vocab_size=tokenizer.vocab_size, block_size=64)).eval()
    task = mc_task(tmp_path)
    result = run(plan(task), LocalLM.from_model(model, tokenizer, batch_size=3))
    for record in result["samples"]:
        ctx = tokenizer.encode(record["context"])
        for choice, ll in zip(record["choices"], record["loglikelihoods"]):
            whole = tokenizer.encode(record["context"] + " " + choice)
            (logp,) = token_logprobs(model, [ctx], [whole[len(ctx):]])
            assert ll == pytest.approx(logp.sum().item(), abs=1e-5)
        best = max(range(2), key=lambda i: (record["loglikelihoods"][i], -i))
        assert record["predictions"]["acc"] == best


def test_gsm8k_gold_solutions_score_100_percent_through_both_filters(shared_data):
    task = Task.load("gsm8k", shared_data)
    docs = task.test_docs()
    gold = {ctx: d.fields["answer"] for d, ctx in zip(docs, task.contexts(docs, 0))}
    result = run(plan(task), FakeLM(answer=lambda r: [gold[r.context]] * r.n), num_fewshot=0)
    assert result["n"] == 7473 and result["invalid"] == {"strict-match": 0, "flexible-extract": 0}
    assert {k: m["value"] for k, m in result["metrics"].items()} == {"exact_match,strict-match": 1.0,
                                                                     "exact_match,flexible-extract": 1.0}
