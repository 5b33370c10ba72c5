"""Tiny random models (GPT-2 and Llama families) and a byte-level BPE tokenizer, built in-process."""

from __future__ import annotations

import pytest
import torch

from lmstack.text.tokenizer import train_bpe
from lmstack.model import Transformer, build_model, preset
from lmstack.model.hf import save_model

VOCAB = 97
TEXT = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！"] * 20


def random_model(name: str, seed: int = 0, vocab_size: int = VOCAB) -> Transformer:
    """A random model with weights scaled up so that next-token distributions are peaked and varied."""
    torch.manual_seed(seed)
    model = build_model(preset(name, vocab_size=vocab_size, block_size=128)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4)
    return model


@pytest.fixture(scope="session", params=["gpt2-tiny", "llama-tiny"])
def pair(request, tmp_path_factory):
    """(our model, the same weights loaded by transformers' AutoModelForCausalLM)."""
    from transformers import AutoModelForCausalLM

    model = random_model(request.param)
    folder = save_model(model, tmp_path_factory.mktemp(request.param))
    return model, AutoModelForCausalLM.from_pretrained(folder).eval()


@pytest.fixture(scope="session")
def model():
    return random_model("gpt2-tiny")


@pytest.fixture(scope="session")
def tokenizer():
    return train_bpe(TEXT, vocab_size=300)


@pytest.fixture(scope="session")
def text_model(tokenizer):
    return random_model("gpt2-tiny", seed=1, vocab_size=tokenizer.vocab_size)
