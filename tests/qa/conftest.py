"""Small synthetic QA data and tokenizers trained on it (nothing downloaded)."""

from __future__ import annotations

import random

import pytest

from lmstack.data.synth import build_world
from lmstack.data.synth.passages import qa
from lmstack.qa.squad import Answer, SquadExample
from lmstack.text.tokenizer import train_bpe, train_char


def to_example(r: dict) -> SquadExample:
    answers = [Answer(a["text"], a["answer_start"]) for a in r["answers"]]
    return SquadExample(r["id"], r["question"], r["context"], answers, r["is_impossible"], r["lang"], r["passage_id"])


@pytest.fixture(scope="session")
def synth_qa() -> dict[str, list]:
    """The qa dataset of world 0: passages (dicts), train and test (Examples)."""
    splits = qa(build_world(0), random.Random("0:dataset:qa"), 1.0)
    return {"passages": splits["passages"], **{k: [to_example(r) for r in splits[k]] for k in ("train", "test")}}


@pytest.fixture(scope="session")
def bpe(synth_qa):
    return train_bpe([t for ex in synth_qa["train"] for t in (ex.question, ex.context)], 600)


@pytest.fixture(scope="session")
def chars(synth_qa):
    return train_char([t for ex in synth_qa["train"] for t in (ex.question, ex.context)])
