"""Invariants of the Transformer itself."""

from __future__ import annotations

import pytest
import torch
import transformers

from lmstack.errors import LmstackError
from lmstack.model import ModelConfig, build_model, preset
from lmstack.model.hf import save_model


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_cached_decoding_equals_full_forward(name):
    model = build_model(preset(name, vocab_size=64)).eval()
    x = torch.randint(0, 64, (3, 20))
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache(3)
        pieces = [model(x[:, :7], cache=cache), model(x[:, 7:8], cache=cache), model(x[:, 8:], cache=cache)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    assert cache.pos == 20


def test_left_padding_matches_unpadded():
    model = build_model(preset("llama-tiny", vocab_size=64)).eval()
    seq = torch.randint(0, 64, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), seq], dim=1)
    key_mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    positions = (key_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        plain = model(seq)[:, -1]
        cache = model.new_cache(1)
        left = model(padded, cache=cache, positions=positions, key_mask=key_mask)[:, -1]
    torch.testing.assert_close(left, plain, atol=1e-5, rtol=0)


def test_parameter_count_matches_transformers(tmp_path):
    model = build_model(preset("gpt2-tiny", vocab_size=100))
    save_model(model, tmp_path / "m")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.num_params(non_embedding=False) == theirs.num_parameters()


def test_flops_per_token_formula():
    model = build_model(preset("gpt2-tiny", vocab_size=100))
    c = model.config
    assert model.flops_per_token(64) == 6 * model.num_params() + 12 * c.n_layer * c.n_embd * 64


def test_config_errors_name_the_fields():
    with pytest.raises(LmstackError, match="n_embd=100 is not divisible by model.n_head=3"):
        ModelConfig(n_embd=100, n_head=3)
    with pytest.raises(LmstackError, match="n_kv_head"):
        ModelConfig(n_head=4, n_kv_head=3)
    with pytest.raises(LmstackError, match="unknown model preset"):
        preset("gpt5")


def test_context_overflow_is_a_clear_error():
    model = build_model(preset("gpt2-tiny", vocab_size=10, block_size=8))
    with pytest.raises(LmstackError, match="exceeds the context of 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
