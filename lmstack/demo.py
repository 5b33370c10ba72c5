"""``lmstack demo``: the whole pipeline on the built-in corpus, ending in a Markdown report.

synth -> prepare (BPE tokenizer + shards) -> unigram baseline -> pretrain -> eval -> decode (greedy, beam,
sampled) -> instruction tuning (LoRA) with held-out questions answered before and after -> BM25 retrieval and
extractive question answering
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.adapt.methods import load_adapted
from lmstack.config import build, load_yaml, merge
from lmstack.data.conversations import read_conversations
from lmstack.data.prepare import prepare
from lmstack.data.synth import synth
from lmstack.text.tokenizer import Tokenizer
from lmstack.eval.chat import exact_match
from lmstack.eval.evaluate_command import evaluate
from lmstack.eval.perplexity import unigram_baseline
from lmstack.generate.api import GenerationConfig, generate
from lmstack.io import atomic_open, read_json, read_jsonl
from lmstack.model.hf import load_model
from lmstack.qa.ask import qa_demo_step
from lmstack.train.config import TrainConfig
from lmstack.train.pretrain import train

CONFIG = Path(__file__).parent / "configs" / "demo.yaml"
SFT_CONFIG = Path(__file__).parent / "configs" / "demo_sft.yaml"
SFT_TEST = 64  # held-out conversations scored before and after tuning
DECODERS = {
    "greedy": GenerationConfig(max_new_tokens=40),
    "beam (4)": GenerationConfig(max_new_tokens=40, num_beams=4, length_penalty=1.0),
    "sampled (T=0.8, top-p 0.9)": GenerationConfig(max_new_tokens=40, do_sample=True, temperature=0.8, top_p=0.9,
                                                   seed=0),
}


def demo(out: Path = Path("runs/demo"), max_iters: int | None = None, vocab_size: int = 2048) -> dict:
    """Synthesise the corpus, train a tokenizer and a small model, evaluate, decode, and write report.md.

    Args:
        out: folder for every artefact of the run (corpus, data, model, report.md, loss.png)
        max_iters: training steps (default: the demo config's)
        vocab_size: BPE vocabulary size
    """
    out, timings, t0 = Path(out), {}, time.perf_counter()
    _say("1/8 synthesising the bilingual corpus")
    corpus = synth(out=out / "corpus")
    timings["synth"] = time.perf_counter() - t0
    _say("2/8 training a byte-level BPE tokenizer and writing token shards")
    data = prepare([out / "corpus" / "pretrain.jsonl"], out=out / "data", vocab_size=vocab_size, chat_markup=True)
    baseline = unigram_baseline(out / "data")
    timings["prepare"] = time.perf_counter() - t0 - sum(timings.values())
    _say(f"   unigram baseline: {baseline:.3f} nats/token (perplexity {math.exp(baseline):.1f})")
    _say("3/8 pretraining")
    overrides = {"data": str(out / "data"), "out": str(out / "train")}
    if max_iters:
        overrides |= {"max_iters": max_iters, "eval_interval": max(1, max_iters // 6)}
    cfg = build(TrainConfig, merge(load_yaml(CONFIG), overrides), str(CONFIG))
    result = train(cfg, overwrite=True)  # the demo owns its folder: a rerun replaces it
    timings["train"] = time.perf_counter() - t0 - sum(timings.values())
    _say("4/8 decoding")
    samples = decode_samples(out / "train" / "model", read_json(out / "corpus" / "world.json"))
    timings["decode"] = time.perf_counter() - t0 - sum(timings.values())
    _say("5/8 instruction tuning (LoRA) and held-out questions before and after")
    sft = instruction_tuning(out, max_iters)
    timings["instruction tuning"] = time.perf_counter() - t0 - sum(timings.values())
    _say("6/8 retrieval (BM25) and extractive question answering over the synthetic passages")
    qa = question_answering(out)
    timings["retrieval + QA"] = time.perf_counter() - t0 - sum(timings.values())
    _say("7/8 evaluation (lm-evaluation-harness tasks): multiple choice about the world, base vs LoRA-tuned")
    evaluation = evaluation_step(out)
    timings["evaluation"] = time.perf_counter() - t0 - sum(timings.values())
    _say("8/8 writing the report")
    evals = [r for _, r in read_jsonl(out / "train" / "metrics.jsonl") if "val_loss" in r]
    write_report(out / "report.md", corpus, data, baseline, evals, samples, sft, qa, evaluation, timings, result)
    return {"report": str(out / "report.md"), "unigram_val_loss": baseline, "first_val_loss": evals[0]["val_loss"],
            "val_loss": result["val_loss"], "val_ppl": result["val_ppl"], "unigram_ppl": math.exp(baseline),
            "exact_match_before": sft["before"]["exact_match"], "exact_match_after": sft["after"]["exact_match"],
            "mc_acc_base": evaluation["base"], "mc_acc_tuned": evaluation["tuned"],
            "qa_recall@1": qa["recall@1"], "qa_reader_exact": qa["reader_exact"], "qa_open_exact": qa["open_exact"],
            "seconds": round(time.perf_counter() - t0, 1)}


def instruction_tuning(out: Path, max_iters: int | None) -> dict:
    """LoRA-tune the pretrained model on the synthetic instructions; score held-out ones before and after."""
    overrides = {"model": str(out / "train" / "model"), "data": [str(out / "corpus" / "sft_train.jsonl")],
                 "out": str(out / "sft")}
    if max_iters:
        overrides |= {"max_iters": max_iters, "eval_interval": max_iters, "warmup_iters": min(20, max_iters)}
    cfg = build(FinetuneConfig, merge(load_yaml(SFT_CONFIG), overrides), str(SFT_CONFIG))
    test = read_conversations(out / "corpus" / "sft_test.jsonl")[:SFT_TEST]
    base, tokenizer = load_adapted(cfg.model)
    before = exact_match(base, tokenizer, test, n_examples=4)
    _say(f"   before tuning: exact match {before['exact_match']:.1%} on {before['n']} held-out conversations")
    result = finetune(cfg, overwrite=True)
    tuned, _ = load_adapted(cfg.model, cfg.out / "adapter")
    after = exact_match(tuned, tokenizer, test, n_examples=4)
    _say(f"   after LoRA ({result['trainable_fraction']:.2%} of the weights trained): exact match "
         f"{after['exact_match']:.1%}")
    for b, a in zip(before["examples"], after["examples"]):
        _say(f"   {b['question']!r}: {b['reply'][:60]!r} -> {a['reply'][:60]!r}")
    return {"before": before, "after": after, "result": result}


def evaluation_step(out: Path) -> dict:
    """``lmstack evaluate world_mc`` (zero-shot multiple choice by log-likelihood, lm-eval's ``acc``) on the
    pretrained model and with the instruction-tuning adapter."""
    scores = {}
    for name, adapter in (("base", None), ("tuned", out / "sft" / "adapter")):
        result = evaluate(["world_mc"], model=str(out / "train" / "model"), adapter=adapter and str(adapter),
                          data_dir=out / "corpus", out=out / "eval" / name, overwrite=True)
        scores[name] = result["results"]["world_mc@0"]["acc,none"]
    _say(f"   world_mc accuracy (4 choices, chance 0.25): base {scores['base']:.3f}, tuned {scores['tuned']:.3f}")
    return scores


def question_answering(out: Path) -> dict:
    """A BM25 index over the synthetic passages and a tiny extractive reader trained for ~30 s; held-out
    questions answered from the gold passage and end to end (retrieve, then read). One thread: this model is
    tiny, and a second thread only adds synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        qa = qa_demo_step(out / "qa", out / "corpus", seconds=30)
    finally:
        torch.set_num_threads(threads)
    _say(f"   retrieval recall@1 {qa['recall@1']:.2f}; reader EM {qa['reader_exact']:.1f} on the gold passage, "
         f"{qa['open_exact']:.1f} end to end")
    return qa


def prompts_for(world: dict) -> list[str]:
    """Prompts whose continuations the corpus teaches: a fact and an arithmetic question, in both languages."""
    name = world["people"][0]["name"]
    return [f"{name['en']} lives in", f"{name['zh']}住在", "What is 23 + 48?\n", "19 + 35 等于多少？\n"]


def decode_samples(model_dir: Path, world: dict) -> list[dict]:
    model, tokenizer = load_model(model_dir).eval(), Tokenizer.load(model_dir)
    rows = []
    for prompt in prompts_for(world):
        row = {"prompt": prompt}
        for name, config in DECODERS.items():
            row[name] = generate(model, tokenizer, prompt, config)
        rows.append(row)
        _say(f"   {prompt!r} -> {row['greedy']!r}")
    return rows


def write_report(path: Path, corpus: dict, data: dict, baseline: float, evals: list[dict], samples: list[dict],
                 sft: dict, qa: dict, evaluation: dict, timings: dict, result: dict) -> None:
    lines = ["# lmstack demo report", "",
             f"Corpus: {corpus['documents']:,} documents, {corpus['text_bytes']:,} bytes (English and Chinese). "
             f"Tokens: {data.get('train_tokens', 0):,} train / {data.get('val_tokens', 0):,} validation, "
             f"vocabulary {data.get('vocab_size')}. Model: {result['params']:,} parameters, "
             f"{result['iters']} steps, {result['tokens']:,} tokens.", "",
             "## Validation loss against the unigram baseline", "",
             "| step | val loss (nats/token) | val perplexity |", "|---:|---:|---:|",
             f"| unigram baseline | {baseline:.3f} | {math.exp(baseline):.1f} |"]
    lines += [f"| {r['iter']} | {r['val_loss']:.3f} | {r['val_ppl']:.2f} |" for r in evals]
    lines += ["", "![loss curve](train/loss.png)", "", "## The same prompts, three decoders", ""]
    for row in samples:
        lines += [f"**Prompt:** `{row['prompt']!r}`", ""]
        lines += [f"- *{name}:* {json.dumps(text, ensure_ascii=False)}"
                  for name, text in row.items() if name != "prompt"]
        lines.append("")
    r, before, after = sft["result"], sft["before"], sft["after"]
    lines += ["## Instruction tuning (LoRA)", "",
              f"LoRA trained {r['trainable_params']:,} of {r['total_params']:,} parameters "
              f"({r['trainable_fraction']:.2%}) for {r['iters']} steps on {r['examples']:,} synthetic conversations. "
              f"Exact match of the reply on {after['n']} held-out conversations: **{before['exact_match']:.1%} before, "
              f"{after['exact_match']:.1%} after**.", "", "![fine-tuning loss](sft/loss.png)", "",
              "| question | reference | before | after |", "|---|---|---|---|"]
    cell = lambda t: json.dumps(t[:120], ensure_ascii=False)[1:-1].replace("|", "\\|")  # noqa: E731
    lines += [f"| {cell(b['question'])} | {cell(b['reference'])} | {cell(b['reply'])} | {cell(a['reply'])} |"
              for b, a in zip(before["examples"], after["examples"])]
    lines += ["", "## Retrieval and question answering", "",
              f"BM25 (jieba for Chinese) over {qa['passages']} passages: recall@1 {qa['recall@1']:.2f}, "
              f"recall@3 {qa['recall@3']:.2f} on {qa['test_questions']} held-out questions. A reader trained from "
              f"scratch for {qa['reader_steps']} steps: exact match {qa['reader_exact']:.1f} / "
              f"F1 {qa['reader_f1']:.1f} given the gold passage, {qa['open_exact']:.1f} / {qa['open_f1']:.1f} "
              "end to end (`lmstack ask`).", "",
              "| question | answer | gold | passage read |", "|---|---|---|---|"]
    lines += [f"| {cell(e['question'])} | {cell(e['answer'])} | {cell(' / '.join(e['gold']))} | {e['cited']} |"
              for e in qa["examples"]]
    lines += ["", "## Evaluation", "",
              "`lmstack evaluate world_mc` (zero-shot four-way multiple choice about the world, by log-likelihood: "
              f"lm-eval's `acc`; chance 0.25): **{evaluation['base']:.3f}** pretrained, **{evaluation['tuned']:.3f}** "
              "with the LoRA adapter. Per-question records in `eval/*/report.json`."]
    lines += ["", "## Time per stage (seconds)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    with atomic_open(path) as f:
        f.write("\n".join(lines) + "\n")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
