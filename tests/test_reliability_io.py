"""Reliability of the readers and run folders across commands: one lone-surrogate policy for every JSON reader
(replace with U+FFFD and count, as ``lmstack clean`` does), and ``finetune`` refusing to replace an earlier run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.config import build
from lmstack.data.conversations import read_conversations
from lmstack.data.files import loads, replace_surrogates
from lmstack.data.preferences import read_preferences
from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.retrieval.index import Retriever, index
from lmstack.text.tokenizer import train_bpe

LONE = '"\\ud800"'  # as JSON spells it: a lone high surrogate, which no UTF-8 writer or tokenizer accepts


def test_the_shared_helper_replaces_lone_surrogates_in_keys_and_values_and_keeps_pairs():
    value, n = loads('{"a\\udc00": ["x\\ud800y", {"k": "\\udfff"}], "pair": "\\ud83d\\ude00", "n": 1}')
    assert value == {"a\ufffd": ["x\ufffdy", {"k": "\ufffd"}], "pair": "\U0001F600", "n": 1} and n == 3
    assert loads('{"plain": "text"}') == ({"plain": "text"}, 0)
    assert replace_surrogates(["\ud800\udc00"]) == (["\ufffd\ufffd"], 2)  # a pair never joined is two lone halves


def test_index_reads_passages_with_lone_surrogates(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text(f'{{"id": "a", "text": "broken {LONE[1:-1]} tide harbour"}}\n'
                                      '{"id": "b", "text": "quiet gulls"}\n', encoding="utf-8")
    index([tmp_path / "p.jsonl"], out=tmp_path / "idx")
    assert "1 lone surrogate escape(s)" in capsys.readouterr().err
    stored = [json.loads(line) for line in (tmp_path / "idx" / "passages.jsonl").read_text().splitlines()]
    assert stored[0]["text"] == "broken \ufffd tide harbour"
    assert Retriever.load(tmp_path / "idx").search("harbour", k=1)[0][0] == "a"


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_conversations_and_preferences_read_lone_surrogates(tmp_path, suffix, capsys):
    sft = {"messages": [{"role": "user", "content": "hi \ud800"}, {"role": "assistant", "content": "\udfffok"}]}
    pref = {"prompt": "which \ud800?", "chosen": "this", "rejected": "that \udc00"}
    for name, record in (("sft", sft), ("pref", pref)):
        body = json.dumps(record) if suffix == ".jsonl" else json.dumps([record])  # ASCII: "\ud800" escapes
        (tmp_path / f"{name}{suffix}").write_text(body + "\n", encoding="utf-8")
    conv = read_conversations(tmp_path / f"sft{suffix}")
    assert [m["content"] for m in conv[0]["messages"]] == ["hi \ufffd", "\ufffdok"]
    (p,) = read_preferences(tmp_path / f"pref{suffix}")
    assert p.prompt[-1]["content"] == "which \ufffd?" and p.rejected == "that \ufffd"
    err = capsys.readouterr().err
    assert "2 lone surrogate escape(s)" in err and f"sft{suffix}" in err and f"pref{suffix}" in err


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    texts = ["hello there", "general kenobi", "the tide rose over the harbour wall"] * 20
    tokenizer = train_bpe(texts, vocab_size=300)
    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1))
    return save_model(model, tmp_path_factory.mktemp("base") / "base", tokenizer)


def _sft_config(base: Path, data: Path, out: Path, **over) -> FinetuneConfig:
    values = {"model": str(base), "data": [str(data)], "val_data": [str(data)], "out": str(out), "method": "lora",
              "batch_size": 2, "max_iters": 2, "eval_interval": 2, "eval_iters": 1, "log_interval": 1,
              "checkpoint_interval": 2, "warmup_iters": 1, "max_len": 48, **over}
    return build(FinetuneConfig, values)


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_finetune_reads_lone_surrogates_and_refuses_to_replace_an_earlier_run(base, tmp_path):
    data = tmp_path / "sft.jsonl"
    record = {"messages": [{"role": "user", "content": "hello \ud800 there"},
                           {"role": "assistant", "content": "general kenobi"}]}
    data.write_text("\n".join([json.dumps(record)] * 6) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    result = finetune(_sft_config(base, data, out))  # before: a traceback from the tokenizer
    assert result["iters"] == 2
    before = _files(out)
    with pytest.raises(LmstackError, match="holds an earlier run's checkpoint: .*--resume .*--overwrite"):
        finetune(_sft_config(base, data, out, max_iters=4))
    with pytest.raises(LmstackError, match="exceeds the model's context"):  # fails on its inputs: writes nothing
        finetune(_sft_config(base, data, out, max_len=1000), overwrite=True)
    assert _files(out) == before
    finetune(_sft_config(base, data, out, max_iters=3, eval_interval=3), overwrite=True)
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["iter"] == 3
