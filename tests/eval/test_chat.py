"""``chat-eval``: exact match of the last assistant turn, per kind, skipping what cannot fit the context."""

from __future__ import annotations

import json

import torch

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.cli import main
from lmstack.config import build
from lmstack.text.tokenizer import train_bpe
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model

RECORDS = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "kind": k}
           for q, a, k in [("Where is Kell?", "Kell is by the river.", "place"), ("2 + 3?", "2 + 3 = 5.", "sum"),
                           ("你好！", "你好！有什么可以帮你的？", "chat"),
                           ("Who is Anna?", "Anna is a baker.", "person")]]


def test_a_memorised_set_scores_one_and_a_wrong_reference_zero(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS))
    tokenizer = train_bpe([m["content"] for r in RECORDS for m in r["messages"]] * 5, vocab_size=300)
    torch.manual_seed(0)
    save_model(build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=48, n_layer=2)),
               tmp_path / "base", tokenizer)
    finetune(build(FinetuneConfig, {"model": str(tmp_path / "base"), "data": [str(data)], "val_data": [str(data)],
                                    "out": str(tmp_path / "ft"), "method": "full", "max_iters": 400, "batch_size": 4,
                                    "lr": 1e-2, "warmup_iters": 5, "eval_interval": 400, "eval_iters": 1}))
    wrong = tmp_path / "wrong.jsonl"
    records = [*RECORDS[:3], {**RECORDS[3], "messages": [RECORDS[3]["messages"][0], {"role": "assistant",
                                                                                      "content": "Anna is a smith."}]}]
    long = {"messages": [{"role": "user", "content": "Where is Kell? " * 20}, {"role": "assistant", "content": "x"}]}
    wrong.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*records, long]))
    main(["chat-eval", "--model", str(tmp_path / "ft" / "model"), "--data", str(data), "--json"])
    first = json.loads(capsys.readouterr().out)
    assert first["exact_match"] == 1.0, first["examples"]
    main(["chat-eval", "--model", str(tmp_path / "ft" / "model"), "--data", str(wrong), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["exact_match"] == 0.75 and result["skipped_too_long"] == 1
    assert result["by_kind"] == {"chat": 1.0, "person": 0.0, "place": 1.0, "sum": 1.0}
