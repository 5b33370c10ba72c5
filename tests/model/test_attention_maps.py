"""Attention weights on request: the explicit path gives the SDPA path's outputs, its maps are transformers'
``output_attentions`` (eager) on identical weights, rows are distributions, causal maps are lower-triangular."""

from __future__ import annotations

import pytest
import torch
import transformers

from lmstack.model import build_model, preset
from lmstack.model.attention_maps import attention_maps
from lmstack.model.hf import save_model

VOCAB = 61


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _model(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return _randomise(build_model(preset(name, vocab_size=VOCAB, n_layer=2, **kw)))


CASES = {"gpt2": dict(name="gpt2-tiny"), "llama-gqa": dict(name="llama-tiny"),
         "bert": dict(name="bert-tiny", n_embd=32, n_head=4, block_size=64)}


def _ids(B: int = 2, T: int = 11) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("case", CASES)
def test_maps_match_transformers_eager_attentions(case, tmp_path):
    kw = dict(CASES[case])
    model = _model(kw.pop("name"), **kw)
    save_model(model, tmp_path / "m")
    auto = transformers.AutoModel if case == "bert" else transformers.AutoModelForCausalLM
    theirs = auto.from_pretrained(tmp_path / "m", attn_implementation="eager").eval()
    ids = _ids()
    mask = torch.ones_like(ids)
    if case == "bert":
        mask[1, 7:] = 0  # padding keys: hidden from every query
    with torch.no_grad():
        with attention_maps(model) as maps:
            out = model(ids, mask) if case == "bert" else model(ids)
        want = theirs(ids, attention_mask=mask, output_attentions=True).attentions
        fast = model(ids, mask) if case == "bert" else model(ids)
    torch.testing.assert_close(out, fast, atol=1e-5, rtol=0)  # the explicit path is the SDPA path's function
    assert len(maps) == len(want) == 2
    for ours, hf in zip(maps, want):
        assert ours.shape == (2, model.config.n_head, 11, 11)
        torch.testing.assert_close(ours, hf, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.sum(-1), torch.ones(ours.shape[:-1]), atol=1e-5, rtol=0)
        if case == "bert":
            assert ours[1, :, :, 7:].abs().max() == 0
        else:
            assert torch.equal(ours.triu(diagonal=1), torch.zeros_like(ours))  # causal: nothing from the future


def test_nothing_is_recorded_outside_the_block():
    model = _model("gpt2-tiny")
    with attention_maps(model) as maps:
        model(_ids())
    model(_ids())
    assert len(maps) == 2 and all(b.attn.maps is None for b in model.blocks)


def test_kv_cache_and_left_padding():
    """Decoding with a cache records [B, H, T, S] maps over everything cached; with left padding, real queries
    give no weight to pad keys, and the outputs equal the fast path's."""
    model = _model("llama-tiny")
    ids = _ids(2, 9)
    key_mask = torch.ones(2, 9, dtype=torch.bool)
    key_mask[0, :3] = False  # row 0 is left-padded by 3
    positions = (key_mask.cumsum(-1) - 1).clamp(min=0)

    def decode(cache):
        return torch.cat([model(ids[:, :6], cache, positions[:, :6], key_mask),
                          model(ids[:, 6:], cache, positions[:, 6:], key_mask)], dim=1)

    with torch.no_grad():
        fast = decode(model.new_cache(2))
        with attention_maps(model) as maps:
            slow = decode(model.new_cache(2))
        with attention_maps(model) as full:
            model(ids, positions=positions, key_mask=key_mask)
    torch.testing.assert_close(slow[0, 3:], fast[0, 3:], atol=1e-5, rtol=0)  # the real tokens of the padded row
    torch.testing.assert_close(slow[1], fast[1], atol=1e-5, rtol=0)
    assert [m.shape for m in maps] == [(2, 4, 6, 6)] * 2 + [(2, 4, 3, 9)] * 2  # prefill, then 3 more over 9 keys
    for layer in range(2):  # the cached steps' maps are the rows of the full forward's map
        torch.testing.assert_close(maps[layer], full[layer][:, :, :6, :6], atol=1e-5, rtol=0)
        torch.testing.assert_close(maps[2 + layer], full[layer][:, :, 6:], atol=1e-5, rtol=0)
    real = maps[0][0, :, 3:]
    assert real[..., :3].abs().max() == 0  # real tokens never look at the left padding
    torch.testing.assert_close(real.sum(-1), torch.ones(4, 3), atol=1e-5, rtol=0)
    assert torch.equal(maps[0][0, :, :3], torch.zeros(4, 3, 6))  # a pad query that may see no key: all zeros
