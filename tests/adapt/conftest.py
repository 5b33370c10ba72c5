"""A tiny random base model with a ChatML tokenizer, and synthetic conversations to tune it on."""

from __future__ import annotations

import json

import pytest
import torch

from lmstack.data.synth import synth
from lmstack.text.tokenizer import train_bpe
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth(out=root, scale=0.05)
    return root


@pytest.fixture(scope="session", params=["gpt2-tiny", "llama-tiny"])
def base(request, corpus, tmp_path_factory):
    """A base model directory (random weights) whose tokenizer was trained on the conversations' text."""
    texts = [m["content"] for line in (corpus / "sft_train.jsonl").read_text().splitlines()
             for m in json.loads(line)["messages"]]
    tokenizer = train_bpe(texts, vocab_size=400)
    torch.manual_seed(0)
    model = build_model(preset(request.param, vocab_size=tokenizer.vocab_size, block_size=160, n_layer=2))
    return save_model(model, tmp_path_factory.mktemp(request.param) / "base", tokenizer)
