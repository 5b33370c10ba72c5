"""Shared fixtures: tiny random models built in-process (nothing is ever downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lmstack.data.prepare import prepare
from lmstack.data.synth import synth

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Every model in the tests is tiny: one thread runs it fastest, and a second only contends on a busy machine.
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real public data sets beside the repo; tests using them skip where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Token shards of a little synthetic pretraining text with a 300-token BPE (the trainer's and sweeps' data)."""
    root = tmp_path_factory.mktemp("corpus")
    synth(out=root / "corpus", scale=0.03)
    prepare([root / "corpus" / "pretrain.jsonl"], out=root / "data", vocab_size=300)
    return root / "data"
