"""The compiled decode step picks exactly the tokens the eager model does (slow: it compiles)."""

from __future__ import annotations

import pytest
import torch

from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model.source import ModelSource

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("prompts", [[[5, 17, 42, 8, 91, 33, 60]], [[5, 17, 42, 8, 91, 33, 60], [9, 4]]],
                         ids=["one", "left-padded"])
def test_compiled_decoding_is_token_identical(pair, prompts):
    model, _ = pair
    config = GenerationConfig(max_new_tokens=60, repetition_penalty=1.3)
    eager = torch.stack(list(decode(model, prompts, config)), dim=1)
    compiled = torch.stack(list(decode(ModelSource(model, compile=True), prompts, config)), dim=1)
    assert torch.equal(compiled, eager)
