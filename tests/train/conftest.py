"""Tiny token shards for the trainer's tests: synthetic pretraining text, a 300-token BPE."""

from __future__ import annotations

import pytest

from lmstack.data.prepare import prepare
from lmstack.data.synth import synth


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    synth(out=root / "corpus", scale=0.03)
    prepare([root / "corpus" / "pretrain.jsonl"], out=root / "data", vocab_size=300)
    return root / "data"
