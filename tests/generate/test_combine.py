"""Mixtures of logit sources: a one-member-weighted mixture is that member, DExperts at a = 0 is the base,
the mixing rules by hand, and every decoder (greedy, sampling, beam, left padding, the engine) reads one."""

from __future__ import annotations

import math

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.generate.beam import beam_search
from lmstack.generate.combine import OUTSIDE, Mixture, contrastive, dexperts
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model.blocks import KVCache
from lmstack.model.source import ModelSource

from .conftest import random_model

PROMPTS = [[5, 17, 42, 8, 91, 33, 60], [9, 4], [3] * 5]


def tokens(source, prompts, **config) -> list[list[int]]:
    return torch.stack(list(decode(source, prompts, GenerationConfig(**config))), dim=1).tolist()


@pytest.fixture(scope="module")
def models():
    return random_model("gpt2-tiny", seed=0), random_model("llama-tiny", seed=1), random_model("gpt2-tiny", seed=2)


@pytest.mark.parametrize("config", [{"max_new_tokens": 20}, {"max_new_tokens": 20, "repetition_penalty": 1.3},
                                    {"max_new_tokens": 20, "do_sample": True, "top_p": 0.9, "seed": 3}])
def test_a_mixture_weighted_one_zero_is_its_first_member(models, config):
    base, other, _ = models
    mixed = Mixture([base, other], [1.0, 0.0])
    assert tokens(mixed, PROMPTS, **config) == tokens(base, PROMPTS, **config)
    assert tokens(Mixture([other, base], [1.0, 0.0]), PROMPTS, **config) == tokens(other, PROMPTS, **config)
    assert tokens(Mixture([base, other], [0.5, 0.5]), PROMPTS, **config) != tokens(base, PROMPTS, **config)


def test_beam_search_over_a_mixture_reorders_every_members_cache(models):
    base, other, _ = models
    config = GenerationConfig(max_new_tokens=15, num_beams=3)
    for prompt in PROMPTS:
        assert beam_search(Mixture([base, other], [1.0, 0.0]), prompt, config) == beam_search(base, prompt, config)
    # one beam over a mixture is greedy over it
    half = Mixture([base, other], [0.5, 0.5])
    one_beam = beam_search(half, PROMPTS[0], GenerationConfig(max_new_tokens=15, num_beams=1))
    assert one_beam == tokens(half, PROMPTS[:1], max_new_tokens=15)[0]


def test_dexperts_with_zero_strength_is_the_base_model(models):
    base, expert, anti = models
    assert tokens(dexperts(base, expert, anti, alpha=0.0), PROMPTS, max_new_tokens=20) == tokens(base, PROMPTS,
                                                                                                 max_new_tokens=20)
    config = GenerationConfig(max_new_tokens=12, num_beams=2)
    assert beam_search(dexperts(base, expert, anti, alpha=0.0), PROMPTS[0], config) == beam_search(base, PROMPTS[0],
                                                                                                   config)
    assert tokens(dexperts(base, expert, anti, alpha=2.0), PROMPTS, max_new_tokens=20) != tokens(base, PROMPTS,
                                                                                                 max_new_tokens=20)


class Fixed:
    """A logit source that always gives the same logits (one row per batch row)."""

    def __init__(self, logits: list[float]):
        self.logits = torch.tensor([logits])
        self.vocab_size, self.context, self.device = len(logits), 100, torch.device("cpu")
        self.reordered: list[list[int]] = []

    def new_cache(self, batch_size, max_len=None, cache_cls=KVCache):
        return object()

    def prefill(self, idx, cache, positions=None, key_mask=None):
        return self.logits.expand(idx.size(0), -1)

    def step(self, tokens, cache, positions=None, key_mask=None):
        return self.logits.expand(tokens.size(0), -1)

    def reorder(self, cache, index):
        self.reordered.append(index.tolist())


def first(source) -> torch.Tensor:
    """The source's scores after a one-token prompt [V]."""
    return source.prefill(torch.zeros(1, 1, dtype=torch.long), source.new_cache(1))[0]


def test_the_mixing_rules_by_hand():
    base, expert, anti = Fixed([1.0, 2.0, 3.0]), Fixed([3.0, 0.0, 0.0]), Fixed([0.0, 0.0, 3.0])
    assert first(dexperts(base, expert, anti, alpha=0.5)).tolist() == [2.5, 2.0, 1.5]  # z + 0.5 (z_exp - z_anti)

    big, uniform, biased = Fixed([2.0, 1.0, 0.0]), Fixed([0.0, 0.0, 0.0]), Fixed([3.0, 0.0, 0.0])
    lse_big, lse_biased = math.log(math.exp(2) + math.e + 1), math.log(math.exp(3) + 2)
    # p(1)/p(0) = e^-1 >= 0.3 is plausible, p(2)/p(0) = e^-2 < 0.3 is not
    cd = first(contrastive(big, uniform, alpha=0.3))
    assert cd[:2].tolist() == pytest.approx([2 - lse_big + math.log(3), 1 - lse_big + math.log(3)], abs=1e-6)
    assert cd[2] == pytest.approx(-lse_big - OUTSIDE) and torch.softmax(cd, -1)[2] == 0  # outside: probability 0
    cd = first(contrastive(big, biased, alpha=0.3))
    assert cd[:2].tolist() == pytest.approx([2 - lse_big - 3 + lse_biased, 1 - lse_big + lse_biased], abs=1e-6)
    assert int(cd.argmax()) == 1  # the amateur's favourite is what the contrast penalises
    assert next(iter(decode(contrastive(big, biased, alpha=0.3), [[0]], GenerationConfig(max_new_tokens=1)))) == 1
    assert (first(contrastive(big, biased, alpha=1.0)) < -OUTSIDE / 2).tolist() == [False, True, True]  # the top only


def test_reorder_reaches_every_member():
    a, b = Fixed([0.0, 1.0]), Fixed([1.0, 0.0])
    mixed = Mixture([a, b], [1.0, 1.0])
    mixed.reorder(mixed.new_cache(2, 4), torch.tensor([1, 1]))
    assert a.reordered == b.reordered == [[1, 1]]


def test_members_must_share_a_vocabulary_and_have_weights():
    with pytest.raises(LmstackError, match="share a vocabulary"):
        Mixture([Fixed([0.0, 1.0]), Fixed([0.0, 1.0, 2.0])], [1.0, 1.0])
    with pytest.raises(LmstackError, match="one weight per source"):
        Mixture([Fixed([0.0, 1.0])], [1.0, 1.0])


def test_a_plain_model_source_decodes_as_the_model(models):
    base = models[0]
    assert tokens(ModelSource(base), PROMPTS, max_new_tokens=10) == tokens(base, PROMPTS, max_new_tokens=10)
