"""Encoders and transformers' BERT: identical random weights give the same outputs in both directions, for
the bare model and every head; bad directories fail with one line."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from lmstack.text.tokenizer import train_char
from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.families.bert import build_encoder, fingerprint, load_encoder
from lmstack.model.heads import (EncoderForMaskedLM, EncoderForMultipleChoice, EncoderForQuestionAnswering,
                                 EncoderForSequenceClassification)
from lmstack.model.hf import save_model

VOCAB = 97
HEADS = {
    None: ("BertModel", lambda e: e),
    "mlm": ("BertForMaskedLM", EncoderForMaskedLM),
    "qa": ("BertForQuestionAnswering", EncoderForQuestionAnswering),
    "classification": ("BertForSequenceClassification", lambda e: EncoderForSequenceClassification(e, 3)),
    "multiple-choice": ("BertForMultipleChoice", EncoderForMultipleChoice),
}


def _randomise(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _inputs(head):
    """A padded batch with two segments (multiple choice: 2 questions x 3 choices)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    types = (torch.arange(12) >= 5).long().expand(2, 12)
    if head == "multiple-choice":
        return [t[:, None].repeat(1, 3, 1) for t in (ids, mask, types)]
    return [ids, mask, types]


def _outputs(out, head):
    if head is None:
        return out.last_hidden_state
    return (out.start_logits, out.end_logits) if head == "qa" else out.logits


@pytest.mark.parametrize("head", HEADS)
def test_lmstack_to_transformers(head, tmp_path):
    arch, wrap = HEADS[head]
    torch.manual_seed(0)
    ours = wrap(build_encoder(preset("bert-tiny", vocab_size=VOCAB, n_embd=32, n_head=4, block_size=64))).eval()
    _randomise(ours)
    save_model(ours, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["architectures"] == [arch]
    theirs = getattr(transformers, arch).from_pretrained(tmp_path / "m").eval()
    ids, mask, types = _inputs(head)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask, types), _outputs(theirs(ids, attention_mask=mask,
                                                                             token_type_ids=types), head),
                                   atol=1e-4, rtol=0)


@pytest.mark.parametrize("head", HEADS)
def test_transformers_to_lmstack(head, tmp_path):
    arch, _ = HEADS[head]
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64,
                                     num_labels=3 if head == "classification" else 2)
    theirs = getattr(transformers, arch)(config).eval()
    _randomise(theirs)
    theirs.save_pretrained(tmp_path / "hf")
    ours, tokenizer = load_encoder(tmp_path / "hf", head=head)
    assert tokenizer is None and not ours.training
    ids, mask, types = _inputs(head)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask, types), _outputs(theirs(ids, attention_mask=mask,
                                                                             token_type_ids=types), head),
                                   atol=1e-4, rtol=0)


def test_body_of_any_head_and_legacy_bin(tmp_path):
    """A BertForPreTraining checkpoint saved as pytorch_model.bin (with the tied decoder copy and position_ids
    the old files carry) loads as a bare encoder and as an MLM."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64)
    theirs = transformers.BertForPreTraining(config).eval()
    _randomise(theirs)
    (tmp_path / "old").mkdir()
    config.architectures = ["BertForPreTraining"]
    config.save_pretrained(tmp_path / "old")
    state = {k: v.clone() for k, v in theirs.state_dict().items()}
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    torch.save(state, tmp_path / "old" / "pytorch_model.bin")
    ids = torch.randint(0, VOCAB, (2, 10))
    body, _ = load_encoder(tmp_path / "old")
    mlm, _ = load_encoder(tmp_path / "old", head="mlm")
    with torch.no_grad():
        out = theirs(ids, output_hidden_states=True)
        torch.testing.assert_close(body(ids), out.hidden_states[-1], atol=1e-4, rtol=0)
        torch.testing.assert_close(mlm(ids), out.prediction_logits, atol=1e-4, rtol=0)


def test_round_trip_and_fingerprint(tmp_path):
    tok = train_char(["some text for the vocabulary"])
    model = EncoderForMaskedLM(build_encoder(preset("bert-tiny", vocab_size=tok.vocab_size, n_embd=32)))
    save_model(model, tmp_path / "a", tok)
    again, tok2 = load_encoder(tmp_path / "a", head="mlm")
    assert again.config == model.config and tok2.encode("some text") == tok.encode("some text")
    assert fingerprint(again, tok2) == fingerprint(model, tok)
    save_model(again, tmp_path / "b", tok2)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    with torch.no_grad():
        again.encoder.blocks[0].mlp.fc.bias[0] += 1e-3
    assert fingerprint(again, tok2) != fingerprint(model, tok)
    assert fingerprint(model, tok, pooling="cls") != fingerprint(model, tok, pooling="mean")
    # transformers reads the tokenizer with our special tokens in BERT's roles.
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "a")
    assert (hf_tok.mask_token, hf_tok.cls_token, hf_tok.sep_token) == ("<|mask|>", "<|bos|>", "<|eos|>")


@pytest.fixture
def saved(tmp_path):
    save_model(build_encoder(preset("bert-tiny", vocab_size=50, n_embd=32)), tmp_path / "enc")
    return tmp_path / "enc"


def test_errors(saved, tmp_path):
    with pytest.raises(LmstackError, match="not found"):
        load_encoder(tmp_path / "nothing")
    with pytest.raises(LmstackError, match="no 'mlm' head"):
        load_encoder(saved, head="mlm")
    with pytest.raises(LmstackError, match="head 'ner'"):
        load_encoder(saved, head="ner")
    save_model(build_model(preset("gpt2-tiny", vocab_size=50)), tmp_path / "gpt2")
    with pytest.raises(LmstackError, match="model_type 'gpt2' is not a BERT encoder"):
        load_encoder(tmp_path / "gpt2")
    weights = saved / "model.safetensors"
    state = load_file(str(weights))
    save_file({**state, "encoder.layer.2.output.dense.weight": torch.zeros(2)}, str(weights))
    with pytest.raises(LmstackError, match="unexpected tensors.*encoder.layer.2"):
        load_encoder(saved)
    save_file({k: v for k, v in state.items() if "layer.1.intermediate" not in k}, str(weights))
    with pytest.raises(LmstackError, match="'encoder.layer.1.intermediate.dense.weight' is missing"):
        load_encoder(saved)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(LmstackError, match="truncated or corrupt"):
        load_encoder(saved)


def test_config_errors(saved):
    config = json.loads((saved / "config.json").read_text())
    del config["lmstack"]
    for field, value, message in [("position_embedding_type", "relative_key", "relative_key"),
                                  ("hidden_act", "mish", "hidden_act 'mish'"), ("is_decoder", True, "is_decoder")]:
        (saved / "config.json").write_text(json.dumps({**config, field: value}))
        with pytest.raises(LmstackError, match=message):
            load_encoder(saved)
    (saved / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    with pytest.raises(LmstackError, match="word_embeddings.weight' has shape"):
        load_encoder(saved)
