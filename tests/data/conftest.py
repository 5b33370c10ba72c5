"""Shared fixtures for the data tests: a small slice of the built-in corpus and a prepared folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmstack.data.synth import generate_documents


@pytest.fixture(scope="session")
def corpus() -> list[dict]:
    """About 600 records (~100 KB) of the built-in corpus."""
    return list(generate_documents(seed=0, scale=0.03))


@pytest.fixture(scope="session")
def corpus_jsonl(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "pretrain.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in corpus), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def prepared(corpus_jsonl, tmp_path_factory) -> Path:
    """A prepared folder with a small bpe vocabulary and shards small enough that there are several."""
    from lmstack.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare([corpus_jsonl], out=out, vocab_size=400, val_fraction=0.1, shard_tokens=10_000)
    return out
