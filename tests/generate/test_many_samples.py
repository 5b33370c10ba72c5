"""K continuations of one prompt with one prefill (self-consistency, Wang et al. 2023): the prompt is read
once, its cache rows copied to K rows, and continuation j equals a single run seeded seed + j, for a plain
model, a virtual-token adapter and a mixture of sources alike."""

from __future__ import annotations

import json

import pytest
import torch

from lmstack.adapt.prefix import Prefix
from lmstack.errors import LmstackError
from lmstack.generate.api import generate
from lmstack.generate.combine import dexperts
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model.source import to_source

from .conftest import random_model
from .test_source import adapted

PROMPTS = [[5, 17, 42, 8, 91, 33, 60], [9, 4]]
K = 5


def rows(source, prompts, k=1, eos_id=None, **config) -> list[list[int]]:
    steps = list(decode(source, prompts, GenerationConfig(**config), eos_id, num_return_sequences=k))
    return torch.stack(steps, dim=1).tolist()


class Counting:
    """A source that counts how many rows its prefills read."""

    def __init__(self, source):
        self.source, self.prefilled = source, []
        self.vocab_size, self.context, self.device = source.vocab_size, source.context, source.device

    def new_cache(self, *args, **kwargs):
        return self.source.new_cache(*args, **kwargs)

    def prefill(self, idx, *args):
        self.prefilled.append(idx.size(0))
        return self.source.prefill(idx, *args)

    def step(self, *args):
        return self.source.step(*args)

    def reorder(self, cache, index):
        self.source.reorder(cache, index)


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny", "prefix", "dexperts"])
def source(request):
    if request.param == "prefix":
        return adapted(Prefix(n_virtual=3, reparam_hidden=0), "gpt2-tiny")
    if request.param == "dexperts":
        return dexperts(random_model("gpt2-tiny"), random_model("gpt2-tiny", seed=1), random_model("gpt2-tiny", 2))
    return random_model(request.param)


@pytest.mark.parametrize("options", [{}, {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "repetition_penalty": 1.2}])
def test_each_of_k_samples_is_the_single_run_with_its_seed(source, options):
    counted = Counting(to_source(source))
    many = rows(counted, PROMPTS, K, max_new_tokens=20, do_sample=True, seed=11, **options)
    assert counted.prefilled == [len(PROMPTS)]  # one prefill of the prompts, not of B * K rows
    assert len(many) == len(PROMPTS) * K
    for b, prompt in enumerate(PROMPTS):
        for j in range(K):
            alone = rows(source, [prompt], max_new_tokens=20, do_sample=True, seed=11 + j, **options)[0]
            assert many[b * K + j] == alone
    assert len({tuple(r) for r in many[:K]}) > 1  # the seeds differ, and so do the samples


def test_k_greedy_copies_are_greedy(source):
    greedy = rows(source, PROMPTS, max_new_tokens=15)
    many = rows(source, PROMPTS, 3, max_new_tokens=15)
    assert many == [g for g in greedy for _ in range(3)]


def test_rows_that_meet_eos_repeat_it_and_others_go_on():
    model = random_model("gpt2-tiny")
    free = rows(model, PROMPTS[:1], 8, max_new_tokens=12, do_sample=True, seed=3)
    eos = free[0][4]  # the first sample meets it at step 5
    ended = rows(model, PROMPTS[:1], 8, eos_id=eos, max_new_tokens=12, do_sample=True, seed=3)
    for f, e in zip(free, ended):
        cut = f.index(eos) + 1 if eos in f else len(f)
        assert e[:cut] == f[:cut] and set(e[cut:]) <= {eos}


def test_generate_returns_k_texts_per_prompt_and_keeps_json_constraints(tokenizer, text_model):
    texts = generate(text_model, tokenizer, "The river", num_return_sequences=4, max_new_tokens=10, do_sample=True,
                     seed=5)
    assert isinstance(texts, list) and len(texts) == 4
    assert texts == [generate(text_model, tokenizer, "The river", max_new_tokens=10, do_sample=True, seed=5 + j)
                     for j in range(4)]
    both = generate(text_model, tokenizer, ["The river", "hello"], num_return_sequences=2, max_new_tokens=6)
    assert both[0] == both[1] and both[2] == both[3] and len(both) == 4
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 99}}, "required": ["n"],
              "additionalProperties": False}
    for text in generate(text_model, tokenizer, "hello", json_schema=schema, num_return_sequences=3,
                         max_new_tokens=40, do_sample=True, seed=0):
        assert set(json.loads(text)) == {"n"}


def test_bad_counts_are_refused(model):
    with pytest.raises(LmstackError, match="num_return_sequences"):
        rows(model, PROMPTS, 0, max_new_tokens=2)
    with pytest.raises(ValueError, match="constraints"):
        list(decode(model, PROMPTS, GenerationConfig(max_new_tokens=2), constraints=[None, None],
                    num_return_sequences=2))
