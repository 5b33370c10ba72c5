"""Word vectors from a model directory: how a word spanning several tokens becomes one vector, contextual layers
checked against transformers' hidden states, nearest neighbours by cosine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.interpret.vector_commands import inspect_neighbours
from lmstack.interpret.vectors import WordVectors, load, token_words, word_ids, word_vectors
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe, train_char

TEXT = ["So Mira Castell lives in Bellhaven. Tomas Brand lives in Marlow Bay.",
        "米拉·卡斯特住在贝尔港。托马斯·布兰德住在马洛湾。",
        "The baker and the teacher eat tomato soup, says Mira."] * 30


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXT, vocab_size=400)


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(preset("gpt2-tiny", vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2)).eval()
    return save_model(model, tmp_path_factory.mktemp("gpt2"), tokenizer)


def test_a_word_is_encoded_as_it_appears_mid_sentence(tokenizer):
    assert word_ids(tokenizer, "Mira") == tokenizer.encode(" Mira")
    assert word_ids(tokenizer, "Mira") != tokenizer.encode("Mira")  # at a text's start BPE splits it otherwise
    assert word_ids(tokenizer, "Marlow_Bay") == word_ids(tokenizer, "Marlow Bay") == tokenizer.encode(" Marlow Bay")
    assert word_ids(tokenizer, "贝尔港") == tokenizer.encode("贝尔港")  # Chinese: no space before a word
    chars = train_char(TEXT)
    assert [chars.decode([i]) for i in word_ids(chars, "Mira")] == ["M", "i", "r", "a"]  # the space token dropped
    with pytest.raises(LmstackError, match="no token"):
        word_ids(tokenizer, " _ ")


def test_input_embedding_vector_is_the_unit_mean_of_the_word_tokens_rows(model_dir, tokenizer):
    body, tok = load(model_dir)
    wv = word_vectors(body, tok, ["Marlow Bay", "米拉·卡斯特", "Bellhaven"])
    table = body.tok_emb.weight.detach()
    for word in wv.words:
        ids = tokenizer.encode(word if word[0] > "\u3000" else " " + word)
        mean = table[ids].mean(0).numpy()
        assert len(ids) >= 1
        np.testing.assert_allclose(wv.vector(word), mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(wv.vectors, axis=1), 1, rtol=1e-6)


def test_contextual_vector_equals_transformers_hidden_state_after_the_block(model_dir, tokenizer):
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(model_dir).eval()
    body, tok = load(model_dir)
    line = "Tomas Brand lives in Marlow Bay."
    ids, offsets = tokenizer.encode_with_offsets(line)
    start = line.index("Marlow Bay")
    span = [i for i, (s, e) in enumerate(offsets) if s < start + len("Marlow Bay") and e > start]
    alone = word_ids(tokenizer, "Marlow Bay")
    with torch.no_grad():
        in_line = hf(torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0, span].mean(0).numpy()
        by_itself = hf(torch.tensor([alone]), output_hidden_states=True).hidden_states[1][0].mean(0).numpy()
    # one context line holding the word, one without: the vector is the mean over the first only
    wv = word_vectors(body, tok, ["Marlow Bay", "Bellhaven"], layer=1, contexts=[line, "no such word here"])
    np.testing.assert_allclose(wv.vector("Marlow Bay"), in_line / np.linalg.norm(in_line), atol=2e-5)
    # with no context holding it, the word alone
    wv = word_vectors(body, tok, ["Marlow Bay"], layer=1)
    np.testing.assert_allclose(wv.vector("Marlow Bay"), by_itself / np.linalg.norm(by_itself), atol=2e-5)
    # two contexts: the mean of the two per-context means
    twice = word_vectors(body, tok, ["Marlow Bay"], layer=1, contexts=[line, line, line], max_contexts=2)
    np.testing.assert_allclose(twice.vector("Marlow Bay"), in_line / np.linalg.norm(in_line), atol=2e-5)
    with pytest.raises(LmstackError, match="blocks 1 to 2"):
        word_vectors(body, tok, ["Mira"], layer=3)


def test_an_encoder_directory_gives_vectors_too(tokenizer, tmp_path):
    torch.manual_seed(0)
    enc = build_model(preset("bert-tiny", vocab_size=tokenizer.vocab_size, block_size=32)).eval()
    body, tok = load(save_model(enc, tmp_path / "bert", tokenizer))
    wv = word_vectors(body, tok, ["Mira", "Bellhaven"], layer=2)
    with torch.no_grad():
        h = enc(torch.tensor([word_ids(tokenizer, "Mira")]))[0].mean(0).numpy()  # the last block is the output
    np.testing.assert_allclose(wv.vector("Mira"), h / np.linalg.norm(h), atol=2e-5)


def test_neighbours_by_cosine_exclude_the_word_itself():
    wv = WordVectors(["a", "b", "c", "d"], np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]]))
    assert [w for w, _ in wv.neighbours("a", 3)] == ["b", "c", "d"]
    assert wv.neighbours("a", 1)[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1), rel=1e-6)
    assert WordVectors(["z"], np.zeros((1, 2))).vectors.tolist() == [[0, 0]]  # a zero vector stays zero
    assert wv.restrict(2).words == ["a", "b"] and wv.restrict(None) is wv


def test_token_words_are_whole_words(tokenizer):
    words = token_words(tokenizer)
    assert "Mira" in words and "Bellhaven" in words and "马洛湾" in words
    assert all(w.isalpha() for w in words) and "ira" not in words


def test_inspect_neighbours_lists_k_per_word(model_dir):
    result = inspect_neighbours(model_dir, ["Mira", "Marlow Bay"], k=3)
    assert set(result["neighbours"]) == {"Mira", "Marlow Bay"}
    assert all(len(v) == 3 and word not in [n for n, _ in v] for word, v in result["neighbours"].items())
    with pytest.raises(LmstackError, match="--k"):
        inspect_neighbours(model_dir, ["Mira"], k=0)
