"""The logit lens: after the last block it is exactly the model's output; the embeddings row is the input embedding
read through the head; ranks and probabilities agree with a direct computation; Chinese text; the command."""

from __future__ import annotations

import json

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.interpret.attention_commands import inspect_logit_lens
from lmstack.interpret.logit_lens import lens_logits, lens_markdown, logit_lens, residual_states
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe

TEXT = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！"] * 20
ZH = "凯尔河镇以盐和琥珀贸易为生。Kell trades amber."


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXT, vocab_size=300)


def tiny(name: str, vocab: int, **kw):
    torch.manual_seed(0)
    model = build_model(preset(name, vocab_size=vocab, block_size=64, n_layer=3, **kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4)  # peaked, varied predictions
    return model


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_the_last_layer_is_the_model_output_and_the_first_the_embeddings(name, tokenizer):
    model = tiny(name, tokenizer.vocab_size)
    ids = tokenizer.encode(ZH)
    states, logits = residual_states(model, ids)
    assert len(states) == model.config.n_layer + 1 and states[0].shape == (len(ids), model.config.n_embd)
    with torch.no_grad():
        assert torch.equal(lens_logits(model, states[-1]), logits)
        assert torch.equal(logits, model(torch.tensor([ids]))[0])  # the hooks changed nothing
        x = model.tok_emb(torch.tensor(ids))
        if model.pos_emb is not None:
            x = x + model.pos_emb(torch.arange(len(ids)))
        torch.testing.assert_close(states[0], x, rtol=0, atol=0)


def test_ranks_and_probabilities_match_a_direct_computation(tokenizer):
    model = tiny("llama-tiny", tokenizer.vocab_size)
    ids = tokenizer.encode(ZH)
    lens = logit_lens(model, tokenizer, ids)
    L1, T = model.config.n_layer + 1, len(ids)
    assert lens.top_ids.shape == lens.top_probs.shape == (L1, T) and lens.next_ranks.shape == (L1, T - 1)
    assert lens.layers == ["embeddings", "layer 1", "layer 2", "layer 3"]
    states, _ = residual_states(model, ids)
    for layer in range(L1):
        probs = torch.softmax(lens_logits(model, states[layer]).double(), -1)
        for t in range(T - 1):
            nxt = ids[t + 1]
            assert lens.next_probs[layer, t] == pytest.approx(probs[t, nxt].item(), rel=1e-4, abs=1e-7)
            assert lens.next_ranks[layer, t] == 1 + int((probs[t] > probs[t, nxt]).sum())
            assert (lens.next_ranks[layer, t] == 1) == (lens.top_ids[layer, t] == nxt)
        assert lens.top_ids[layer].tolist() == probs.argmax(-1).tolist()
        assert lens.top_tokens[layer] == [tokenizer.decode([i]) for i in probs.argmax(-1).tolist()]


def test_chinese_table_heat_map_and_command(tokenizer, tmp_path):
    model = tiny("llama-tiny", tokenizer.vocab_size)
    lens = logit_lens(model, tokenizer, tokenizer.encode(ZH))
    table = lens_markdown(lens)
    assert "| 0 | `凯` |" in table and len(table.splitlines()) == 2 + len(lens.tokens.ids)
    folder = save_model(model, tmp_path / "m", tokenizer)
    figures = inspect_logit_lens(folder, text=ZH, out=tmp_path / "out", colour="top")
    assert (tmp_path / "out" / "lens.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "out" / "lens.json").read_text(encoding="utf-8"))
    assert saved["top_ids"] == lens.top_ids.tolist() and figures["tokens"] == len(lens.tokens.ids)
    assert figures["top1_accuracy_layer_3"] == pytest.approx((lens.next_ranks[-1] == 1).mean())
    with pytest.raises(LmstackError, match="lens.json exists"):
        inspect_logit_lens(folder, text=ZH, out=tmp_path / "out")
    with pytest.raises(LmstackError, match="--colour"):
        inspect_logit_lens(folder, text=ZH, out=tmp_path / "o2", colour="blue")


def test_an_encoder_has_no_lens(tokenizer, tmp_path):
    encoder = build_model(preset("bert-tiny", vocab_size=tokenizer.vocab_size, n_embd=32, n_head=4, n_layer=1))
    folder = save_model(encoder, tmp_path / "bert", tokenizer)
    with pytest.raises(LmstackError, match="encoder predicts no next token"):
        inspect_logit_lens(folder, text=ZH, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
