"""The T5 v1.1 encoder-decoder: identical random weights in lmstack and transformers' T5ForConditionalGeneration give
the same logits in both directions (tied and untied heads, padded inputs); save/load is bit-exact; unsupported
variants are refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model
from lmstack.model.seq2seq import relative_position_bucket
from lmstack.model.skeleton import empty_weights
from lmstack.text.tokenizer import SPECIAL_TOKENS, train_bpe

VOCAB = 97
SHAPE = dict(vocab_size=VOCAB, n_embd=32, head_dim=8, intermediate_size=48, n_layer=2, n_decoder_layer=3,
             relative_attention_num_buckets=8, relative_attention_max_distance=20)


def _randomise(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _inputs():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, VOCAB, (2, 30), generator=g), torch.randint(0, VOCAB, (2, 25), generator=g)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, :7] = False  # a left-padded row: distances beyond max_distance reach the log buckets too
    return x, y, mask


def _hf_config(**kw) -> transformers.T5Config:
    return transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
                                 num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                                 feed_forward_proj="gated-gelu", decoder_start_token_id=0, **kw)


@pytest.mark.parametrize("tie", [False, True])
def test_lmstack_to_transformers(tie, tmp_path):
    torch.manual_seed(0)
    model = build_model(preset("t5-tiny", tie_embeddings=tie, **SHAPE)).eval()
    _randomise(model)
    save_model(model, tmp_path / "m")
    theirs = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "m").eval()
    assert (theirs.lm_head.weight is theirs.shared.weight) == tie
    x, y, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x, y, mask), theirs(input_ids=x, attention_mask=mask,
                                                             decoder_input_ids=y).logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(model.encode(x, mask), theirs.encoder(input_ids=x, attention_mask=mask)
                                   .last_hidden_state, atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", ["untied-v4-config", "untied-v5", "tied-unscaled", "tied-scaled"])
def test_transformers_to_lmstack(case, tmp_path):
    """transformers 5 ties every T5 it builds (scaling by scale_decoder_outputs); an untied head is a separate
    lm_head.weight in the file, and older configs say tie_word_embeddings false."""
    torch.manual_seed(0)
    theirs = transformers.T5ForConditionalGeneration(_hf_config(tie_word_embeddings=case != "tied-unscaled")).eval()
    _randomise(theirs)
    theirs.save_pretrained(tmp_path / "hf")
    if case.startswith("untied"):  # give the head its own weights, as Google's v1.1 checkpoints have
        state = load_file(tmp_path / "hf" / "model.safetensors")
        state["lm_head.weight"] = torch.randn(VOCAB, 32, generator=torch.Generator().manual_seed(3))
        save_file(state, tmp_path / "hf" / "model.safetensors", metadata={"format": "pt"})
        config = json.loads((tmp_path / "hf" / "config.json").read_text())
        config["scale_decoder_outputs"] = False
        if case == "untied-v4-config":
            config["tie_word_embeddings"] = False
            del config["scale_decoder_outputs"]
        (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
        theirs = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    ours = load_model(tmp_path / "hf").eval()
    assert ours.config.tie_embeddings == case.startswith("tied")
    assert ours.config.output_scale == (case == "tied-scaled")
    x, y, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, y, mask), theirs(input_ids=x, attention_mask=mask,
                                                            decoder_input_ids=y).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_is_bit_exact(tie, tmp_path):
    model = build_model(preset("t5-tiny", tie_embeddings=tie, **SHAPE))
    _randomise(model)
    save_model(model, tmp_path / "a")
    again = load_model(tmp_path / "a")
    save_model(again, tmp_path / "b")
    assert again.config == model.config
    assert (again.lm_head.weight is again.tok_emb.weight) == tie
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_relative_buckets_match_transformers():
    relative = torch.arange(-300, 300)[None, :]
    for bidirectional in (True, False):
        theirs = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
            relative, bidirectional=bidirectional, num_buckets=32, max_distance=128)
        assert torch.equal(relative_position_bucket(relative, bidirectional, 32, 128), theirs)


def test_padding_and_causality_are_respected():
    torch.manual_seed(0)
    model = build_model(preset("t5-tiny", **SHAPE)).eval()
    x, y, _ = _inputs()
    with torch.no_grad():
        full = model(x[:1], y[:1])
        padded = torch.cat([torch.full((1, 5), 3), x[:1]], dim=1)
        mask = torch.arange(35)[None] >= 5
        torch.testing.assert_close(model(padded, y[:1], mask), full, atol=1e-5, rtol=0)  # left padding is invisible
        changed = y[:1].clone()
        changed[0, 10:] = 1
        torch.testing.assert_close(model(x[:1], changed)[:, :10], full[:, :10], atol=1e-6, rtol=0)  # causal


def test_tokenizer_records_pad_eos_and_sentinels(tmp_path):
    tok = train_bpe(["salt and amber " * 5] * 4, vocab_size=300,
                    special_tokens=SPECIAL_TOKENS + [f"<extra_id_{i}>" for i in (1, 0, 2)])
    model = build_model(preset("t5-tiny", **{**SHAPE, "vocab_size": tok.vocab_size},
                               decoder_start_token_id=tok.pad_id))
    save_model(model, tmp_path / "m", tok)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["pad_token_id"], config["eos_token_id"], config["decoder_start_token_id"]) == (
        tok.pad_id, tok.eos_id, tok.pad_id)
    names = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())["additional_special_tokens"]
    assert names == ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]
    generation = json.loads((tmp_path / "m" / "generation_config.json").read_text())
    assert generation["decoder_start_token_id"] == tok.pad_id  # transformers' generate starts from it
    eos = generation["eos_token_id"]
    assert (eos[0] if isinstance(eos, list) else eos) == tok.eos_id  # (and the chat turn end, a ChatML tokenizer)


@pytest.mark.parametrize("edit, message", [
    (lambda c, s: c.update(feed_forward_proj="relu"), "feed_forward_proj 'relu' is not supported"),
    (lambda c, s: s.pop("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
     "relative-attention bias table"),
    (lambda c, s: c.update(model_type="umt5"), "model_type 'umt5' is not supported"),
    (lambda c, s: c.update(model_type="mt5"), "model_type 'mt5' is not supported"),
    (lambda c, s: c.update(architectures=["T5ForSequenceClassification"]), "T5ForConditionalGeneration folders only"),
])
def test_unsupported_variants_are_named(edit, message, tmp_path):
    model = build_model(preset("t5-tiny", **SHAPE))
    save_model(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["lmstack"]
    state = load_file(tmp_path / "m" / "model.safetensors")
    edit(config, state)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    save_file(state, tmp_path / "m" / "model.safetensors")
    with pytest.raises(LmstackError, match=message) as e:
        load_model(tmp_path / "m")
    assert "\n" not in str(e.value)


def test_size_and_flops():
    with empty_weights():  # shapes only
        model = build_model(preset("t5-small", vocab_size=32128))
    assert model.num_params() == 76_961_152  # google/t5-v1_1-small's count (transformers' num_parameters)
    assert model.flops_per_token(512) > 6 * model.num_params()


def test_a_config_t5_cannot_have_is_refused():
    with pytest.raises(LmstackError, match="no biases"):
        build_model(preset("t5-tiny", bias=True))
    with pytest.raises(LmstackError, match="n_decoder_layer must be positive"):
        build_model(preset("t5-tiny", n_decoder_layer=-1))


def test_linear_slices_are_the_hf_linears():
    """What PEFT targets: every linear of both stacks under its T5ForConditionalGeneration module name."""
    from lmstack.model import linear_slices

    model = build_model(preset("t5-tiny", **SHAPE))
    theirs = transformers.T5ForConditionalGeneration(_hf_config(tie_word_embeddings=False))
    hf_linears = {n for n, m in theirs.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    slices = linear_slices(model)
    assert {s.hf_module for s in slices} == hf_linears
    for s in slices:  # each slice has the rows of the Hugging Face layer it stands for
        assert s.end - s.start == theirs.get_submodule(s.hf_module).out_features
