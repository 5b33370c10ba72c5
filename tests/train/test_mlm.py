"""Masked-LM pretraining: BERT's 80/10/10 masking from one generator, a tiny encoder that learns, and a saved
model that transformers' BertForMaskedLM reads with the same logits."""

from __future__ import annotations

import random

import pytest
import torch
import transformers

from lmstack.data.prepare import prepare
from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.model import preset
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.causal import causal_lm_loss
from lmstack.train.objectives.mlm import MaskedBatches, build_mlm_model, mask_tokens, save_mlm_model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Sentences from a tiny grammar: a masked character is predictable from the ones around it."""
    root = tmp_path_factory.mktemp("mlm")
    rnd = random.Random(0)
    subjects, verbs, objects = ["the cat", "a dog", "my friend", "the king"], ["sees", "eats", "likes"], \
        ["the fish", "an apple", "the moon", "a song"]
    paragraphs = [" ".join(f"{rnd.choice(subjects)} {rnd.choice(verbs)} {rnd.choice(objects)}." for _ in range(8))
                  for _ in range(300)]
    (root / "corpus.txt").write_text("\n\n".join(paragraphs) + "\n")
    prepare([root / "corpus.txt"], out=root / "data", tokenizer="char", val_fraction=0.1)
    return root / "data"


def test_masking_is_bert_80_10_10_and_reproducible():
    x = torch.randint(10, 100, (64, 128))
    x[:, ::16] = 3  # a special token: never a target
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    inputs, labels = mask_tokens(x, mask_id=5, vocab_size=100, special_ids=torch.tensor([3, 5]), generator=g)
    chosen = labels != -100
    assert 0.13 < chosen.float().mean() / (x != 3).float().mean() < 0.17
    assert not chosen[x == 3].any() and torch.equal(labels[chosen], x[chosen])
    assert torch.equal(inputs[~chosen], x[~chosen])
    masked, kept = (inputs[chosen] == 5).float().mean(), (inputs[chosen] == x[chosen]).float().mean()
    assert 0.75 < masked < 0.85 and 0.07 < kept < 0.14  # 10% kept, plus random draws that hit the same token
    g.set_state(state)
    again = mask_tokens(x, 5, 100, torch.tensor([3, 5]), g)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_every_batch_has_a_target():
    x = torch.randint(10, 100, (1, 3))
    for seed in range(20):
        _, labels = mask_tokens(x, 5, 100, torch.tensor([5]), torch.Generator().manual_seed(seed))
        assert (labels != -100).any()


def test_tiny_mlm_learns_and_loads_in_transformers(data, tmp_path):
    torch.manual_seed(0)
    tok = Tokenizer.load(data)
    model = build_mlm_model(preset("bert-tiny", vocab_size=tok.vocab_size, n_embd=64, n_head=2, block_size=32))
    batches = MaskedBatches(TokenShards(data, "train"), tok)
    val = MaskedBatches(TokenShards(data, "val"), tok)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def val_loss() -> float:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            return sum(causal_lm_loss(model(x), y).item() for x, y in (val.batch(16, 32, g) for _ in range(4))) / 4

    rng = torch.Generator().manual_seed(0)
    before = val_loss()
    for _ in range(100):
        x, y = batches.batch(16, 32, rng)
        causal_lm_loss(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = val_loss()
    assert after < 0.5 * before, (before, after)  # from ~ln(V) = 5.6 to about the characters' unigram entropy
    model.eval()
    save_mlm_model(model, tmp_path / "mlm", tok)
    theirs = transformers.BertForMaskedLM.from_pretrained(tmp_path / "mlm").eval()
    x, _ = batches.batch(2, 32, rng)
    with torch.no_grad():
        torch.testing.assert_close(model(x), theirs(x).logits, atol=1e-4, rtol=0)
    fill = transformers.AutoTokenizer.from_pretrained(tmp_path / "mlm")
    assert fill.mask_token == "<|mask|>" and fill.mask_token_id == batches.mask_id


def test_errors(data):
    with pytest.raises(LmstackError, match="--model.family bert"):
        build_mlm_model(preset("gpt2-tiny"))
    tok = Tokenizer.load(data)
    no_mask = Tokenizer.load(data)
    no_mask.backend = type(tok.backend).from_str(tok.backend.to_str().replace("<|mask|>", "<|nomask|>"))
    with pytest.raises(LmstackError, match="no \\[MASK\\] or <\\|mask\\|> token"):
        MaskedBatches(TokenShards(data, "train"), no_mask)
