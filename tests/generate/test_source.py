"""Logit sources: a model hands decoders its own source; virtual-token adapters fill their positions at
prefill, so every decoder (greedy, left-padded, beam) sees the adapted model without knowing of it."""

from __future__ import annotations

import pytest
import torch

from lmstack.adapt.prefix import Prefix
from lmstack.adapt.prompt import Prompt
from lmstack.adapt.virtual import VirtualSource
from lmstack.generate.beam import beam_search
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model.source import LogitSource, ModelSource, to_source

from .conftest import random_model

PROMPTS = [[5, 17, 42, 8, 91, 33, 60], [9, 4], [3] * 5]


def adapted(method, family: str):
    model = method.apply(random_model(family)).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module", params=[(Prefix(n_virtual=3, reparam_hidden=0), "gpt2-tiny"),
                                        (Prompt(n_virtual=4), "llama-tiny")], ids=["prefix", "prompt"])
def virtual(request):
    return adapted(*request.param)


def test_each_model_hands_over_its_own_source(model, virtual):
    plain = to_source(model)
    assert type(plain) is ModelSource and isinstance(plain, LogitSource)
    assert to_source(plain) is plain
    own = to_source(virtual)
    assert isinstance(own, VirtualSource) and own.context == virtual.base.config.block_size - virtual.n_virtual
    cache = own.new_cache(2, 10)
    assert cache.max_len == 10 + virtual.n_virtual and cache.pos == 0  # room for them; filled at prefill


def test_greedy_over_a_virtual_source_is_the_argmax_of_full_forward_passes(virtual):
    out = torch.stack(list(decode(virtual, PROMPTS, GenerationConfig(max_new_tokens=8))), dim=1).tolist()
    for prompt, tokens in zip(PROMPTS, out):  # left-padded together, each as its own full recomputation
        seq = list(prompt)
        with torch.no_grad():
            for _ in range(8):
                seq.append(int(virtual(torch.tensor([seq]))[0, -1].argmax()))
        assert tokens == seq[len(prompt):]


def test_beam_search_over_a_virtual_source(virtual):
    greedy = torch.stack(list(decode(virtual, PROMPTS[:1], GenerationConfig(max_new_tokens=12))), dim=1)[0].tolist()
    assert beam_search(virtual, PROMPTS[0], GenerationConfig(max_new_tokens=12, num_beams=1)) == greedy
    three = beam_search(virtual, PROMPTS[0], GenerationConfig(max_new_tokens=12, num_beams=3))
    base = beam_search(virtual.base, PROMPTS[0], GenerationConfig(max_new_tokens=12, num_beams=3))
    assert len(three) == 12 and three != base  # the virtual positions are read by every beam
