"""Decoding a T5 encoder-decoder through the same API as a causal LM: greedy and beam search token-identical to
transformers.generate, seeded sampling reproducible (and as transformers draws), a padded batch equal to one
input at a time, the cross-attention K/V computed once per input."""

from __future__ import annotations

import pytest
import torch
import transformers

from lmstack.generate.beam import beam_search
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model

VOCAB = 97
INPUTS = [[5, 17, 42, 8, 91, 33, 60, 12, 7], [44, 3, 19]]


def random_t5(tie: bool = False):
    """A random T5 with weights scaled up so that next-token distributions are peaked and varied."""
    torch.manual_seed(1)
    model = build_model(preset("t5-tiny", vocab_size=VOCAB, n_embd=32, head_dim=8, intermediate_size=64,
                               tie_embeddings=tie, block_size=64)).eval()  # equal depths: transformers 5
    # sizes its generate cache by the encoder depth (num_layers), so an asymmetric T5 fails there
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("qkv.weight", "q.weight", "kv.weight", "gate_up.weight", "proj.weight")):
                p.mul_(2)
    return model


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def pair(request, tmp_path_factory):
    model = random_t5(request.param)
    folder = save_model(model, tmp_path_factory.mktemp("t5"))
    return model, transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()


def tokens(model, inputs, eos_id=None, **config) -> list[list[int]]:
    steps = list(decode(model, inputs, GenerationConfig(**config), eos_id))
    return torch.stack(steps, dim=1).tolist()


def hf_tokens(hf, x, **kwargs) -> list[int]:
    out = hf.generate(torch.tensor([x]), pad_token_id=0, **kwargs)  # the start token: our generation_config.json
    return out[0, 1:].tolist()  # after the decoder start token


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_matches_transformers(pair, penalty):
    model, hf = pair
    for x in INPUTS:
        ours = tokens(model, [x], max_new_tokens=30, repetition_penalty=penalty)[0]
        assert ours == hf_tokens(hf, x, max_new_tokens=30, do_sample=False, eos_token_id=None,
                                 repetition_penalty=penalty)  # the penalty counts decoder tokens only, as theirs
        assert len(set(ours)) > 5  # a varied output, not one token repeated


def test_beam_search_with_repetition_penalty_matches_transformers(pair):
    model, hf = pair
    config = GenerationConfig(max_new_tokens=16, num_beams=3, repetition_penalty=1.5)
    assert beam_search(model, INPUTS[0], config) == hf_tokens(hf, INPUTS[0], max_new_tokens=16, num_beams=3,
                                                              repetition_penalty=1.5, do_sample=False,
                                                              eos_token_id=None)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_beam_search_matches_transformers(pair, num_beams):
    model, hf = pair
    greedy = tokens(model, [INPUTS[0]], max_new_tokens=12)[0]
    for eos in (None, greedy[2], greedy[8]):  # never, early and late
        config = GenerationConfig(max_new_tokens=16, num_beams=num_beams)
        theirs = hf_tokens(hf, INPUTS[0], max_new_tokens=16, num_beams=num_beams, do_sample=False, eos_token_id=eos)
        ours = beam_search(model, INPUTS[0], config, eos)
        if num_beams == 1:  # transformers' num_beams=1 is greedy, which pads after eos up to no length
            ours = tokens(model, [INPUTS[0]], eos_id=eos, max_new_tokens=16)[0]
            theirs = theirs[:len(ours)]
        assert ours == theirs


def test_sampling_is_seeded_and_matches_transformers(pair):
    model, hf = pair
    ours = tokens(model, [INPUTS[0]], max_new_tokens=20, do_sample=True, seed=7, top_k=0)[0]
    assert ours == tokens(model, [INPUTS[0]], max_new_tokens=20, do_sample=True, seed=7, top_k=0)[0]
    assert ours != tokens(model, [INPUTS[0]], max_new_tokens=20, do_sample=True, seed=8, top_k=0)[0]
    torch.manual_seed(7)
    assert ours == hf_tokens(hf, INPUTS[0], max_new_tokens=20, do_sample=True, top_k=0, eos_token_id=None)


def test_padded_batch_equals_one_at_a_time(pair):
    model, _ = pair
    batch = tokens(model, INPUTS, max_new_tokens=20)
    assert batch == [tokens(model, [x], max_new_tokens=20)[0] for x in INPUTS]
    eos = batch[1][5]  # a row that ends early repeats eos while the other goes on
    end = batch[1].index(eos) + 1
    ended = tokens(model, INPUTS, eos_id=eos, max_new_tokens=20)
    assert ended[1][:end] == batch[1][:end] and set(ended[1][end:]) <= {eos}
    n0 = batch[0].index(eos) + 1 if eos in batch[0] else len(batch[0])
    assert ended[0][:n0] == batch[0][:n0]


def test_samples_share_one_encoding(pair, monkeypatch):
    model, _ = pair
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda *a, **k: calls.append(1) or encode(*a, **k))
    steps = list(decode(model, [INPUTS[0]], GenerationConfig(max_new_tokens=8, do_sample=True, seed=3), None,
                        num_return_sequences=3))
    rows = torch.stack(steps, dim=1).tolist()
    assert len(calls) == 1  # the encoder ran once; the cross-attention K/V were copied to the 3 rows
    assert rows[0] == tokens(model, [INPUTS[0]], max_new_tokens=8, do_sample=True, seed=3)[0]


def test_cached_steps_equal_teacher_forcing(pair):
    model, _ = pair
    out = tokens(model, [INPUTS[0]], max_new_tokens=15)[0]
    with torch.no_grad():
        logits = model(torch.tensor([INPUTS[0]]), torch.tensor([[0] + out[:-1]]))
    assert logits.argmax(-1)[0].tolist() == out


def test_serving_and_speculative_decoding_refuse_an_encoder_decoder(pair):
    from lmstack.errors import LmstackError
    from lmstack.generate.speculative import PromptLookup, speculative_decode
    from lmstack.serve.engine import Engine
    from lmstack.text.tokenizer import train_bpe

    model, _ = pair
    with pytest.raises(LmstackError, match="encoder-decoder") as e:
        Engine(model, train_bpe(["salt and amber"] * 4, vocab_size=280), slots=2)
    assert "\n" not in str(e.value)
    with pytest.raises(LmstackError, match="encoder-decoder"):
        list(speculative_decode(model, INPUTS[0], GenerationConfig(max_new_tokens=4), PromptLookup(2, 2)))
