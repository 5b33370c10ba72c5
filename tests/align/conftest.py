"""Fixtures for the RL tests (PPO, GRPO): a tiny random decoder with a ChatML tokenizer, and prompt files."""

from __future__ import annotations

import json

import pytest
import torch

from lmstack.data.preferences import PromptRecord
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe

RL_TEXTS = ["What is two plus two?", "Four.", "Say something nice.", "The weather is lovely today.",
            "What is three plus five?", "Eight.", "请用中文回答：二加二是多少？", "四。"]


@pytest.fixture(scope="session")
def rl_base(tmp_path_factory):
    """A 2-layer Llama-style model directory (random weights, 64-token context) and its tokenizer."""
    tokenizer = train_bpe(RL_TEXTS * 20, vocab_size=300)
    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2))
    return save_model(model, tmp_path_factory.mktemp("rl") / "base", tokenizer)


@pytest.fixture(scope="session")
def rl_records() -> list[PromptRecord]:
    return [PromptRecord([{"role": "user", "content": t}], f"prompts.jsonl:{i + 1}", {"answer": i})
            for i, t in enumerate(RL_TEXTS)]


@pytest.fixture(scope="session")
def rl_prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rl_prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": t, "answer": i}) + "\n" for i, t in enumerate(RL_TEXTS * 2)))
    return path

