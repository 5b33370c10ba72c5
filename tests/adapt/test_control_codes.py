"""``lmstack train-control``: fine-tuning behind control codes (CTRL), or untagged experts for DExperts."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lmstack.adapt.control_codes import CONTROL_FILE, read_control_codes, train_control
from lmstack.data.synth import DATASETS, build_world
from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("control")
    rows = DATASETS["attributes"](build_world(0), random.Random("0:dataset:attributes"), 0.001)["train"]
    data = root / "attributes_train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tokenizer = train_bpe([r["text"] for r in rows], vocab_size=300)
    torch.manual_seed(0)
    base = save_model(build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=96, n_layer=1)),
                      root / "base", tokenizer)
    return root, data, base, rows


def test_tagged_run_writes_its_codes_and_tags_every_text(setup):
    root, data, base, rows = setup
    result = train_control(data, base, root / "ctrl", codes=["sentiment", "topic=food"], max_iters=3, batch_size=4)
    kept = [r for r in rows if r["attribute"] == "sentiment" or (r["attribute"], r["label"]) == ("topic", "food")]
    records = [json.loads(line) for line in (root / "ctrl" / "control_data.jsonl").read_text().splitlines()]
    assert records == [{"prompt": f"<{r['attribute']}={r['label']}> ", "completion": r["text"]} for r in kept]
    assert result["codes"] == {"sentiment": ["negative", "positive"], "topic": ["food"]}
    assert read_control_codes(None, root / "ctrl" / "model") == result["codes"]
    with pytest.raises(LmstackError, match="earlier run"):
        train_control(data, base, root / "ctrl", max_iters=3)


def test_untagged_expert_has_no_codes(setup):
    root, data, base, rows = setup
    result = train_control(data, base, root / "expert", codes=["sentiment=positive"], tag=False, max_iters=2,
                           batch_size=4)
    records = [json.loads(line) for line in (root / "expert" / "control_data.jsonl").read_text().splitlines()]
    assert {r["prompt"] for r in records} == {""} and len(records) == result["texts"]
    assert len(records) == sum((r["attribute"], r["label"]) == ("sentiment", "positive") for r in rows)
    assert not (root / "expert" / "model" / CONTROL_FILE).exists()


def test_unknown_code_is_refused_before_anything_is_written(setup, tmp_path):
    _, data, base, _ = setup
    with pytest.raises(LmstackError, match=r"--codes sentiment=happy: not in .*; it has: politeness=polite"):
        train_control(data, base, tmp_path / "run", codes=["sentiment=happy"])
    assert not (tmp_path / "run").exists()
