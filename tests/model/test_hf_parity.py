"""Identical random weights in lmstack and in transformers give the same logits, in both directions."""

from __future__ import annotations

import pytest
import torch
import transformers

from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model

VOCAB = 97
OURS = {
    "gpt2": dict(name="gpt2-tiny"),
    "gpt2-nobias-gelu": dict(name="tiny"),
    "llama-gqa": dict(name="llama-tiny"),
    "llama-untied": dict(name="llama-tiny", tie_embeddings=False),
    "qwen2": dict(name="llama-tiny", qkv_bias=True),
}
THEIRS = {
    "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4),
    "llama": lambda: transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              max_position_embeddings=64, rope_theta=5000.0),
    "qwen2": lambda: transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                              max_position_embeddings=64, tie_word_embeddings=True),
}


def _randomise(model: torch.nn.Module) -> None:
    """Move norms and biases off their init values so a dropped or swapped tensor shows up in the logits."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("case", OURS)
def test_lmstack_to_transformers(case, tmp_path):
    kw = dict(OURS[case])
    model = build_model(preset(kw.pop("name"), vocab_size=VOCAB, **kw)).eval()
    _randomise(model)
    save_model(model, tmp_path / "m")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    x = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), theirs(x).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", THEIRS)
def test_transformers_to_lmstack(case, tmp_path):
    torch.manual_seed(0)
    theirs = transformers.AutoModelForCausalLM.from_config(THEIRS[case]()).eval()
    _randomise(theirs)
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf").eval()
    x = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x).logits, atol=1e-4, rtol=0)


def test_round_trip_is_bit_exact(tmp_path):
    model = build_model(preset("llama-tiny", vocab_size=VOCAB, tie_embeddings=False))
    _randomise(model)
    save_model(model, tmp_path / "a")
    again = load_model(tmp_path / "a")
    save_model(again, tmp_path / "b")
    assert again.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
