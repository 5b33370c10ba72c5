"""Greedy, sampling and beam search: token-identical to transformers on the same weights, and consistent
with each other, with uncached recomputation and with per-prompt decoding."""

from __future__ import annotations

import copy

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.generate.beam import beam_search
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.layout import decode_layout

PROMPT = [5, 17, 42, 8, 91, 33, 60]


def tokens(model, prompts, eos_id=None, **config) -> list[list[int]]:
    steps = list(decode(model, prompts, GenerationConfig(**config), eos_id))
    return torch.stack(steps, dim=1).tolist()


def hf_tokens(hf, prompt, **kwargs) -> list[int]:
    out = hf.generate(torch.tensor([prompt]), pad_token_id=0, **kwargs)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_matches_transformers(pair, penalty):
    model, hf = pair
    ours = tokens(model, [PROMPT], max_new_tokens=40, repetition_penalty=penalty)[0]
    assert ours == hf_tokens(hf, PROMPT, max_new_tokens=40, do_sample=False, repetition_penalty=penalty)
    assert (ours != tokens(model, [PROMPT], max_new_tokens=40)[0]) == (penalty != 1.0)  # the penalty bites


@pytest.mark.parametrize("options", [{}, {"temperature": 0.7, "top_k": 20, "top_p": 0.9},
                                     {"top_p": 0.5, "repetition_penalty": 1.3}])
def test_sampling_matches_transformers_with_the_same_seed(pair, options):
    model, hf = pair
    ours = tokens(model, [PROMPT], max_new_tokens=30, do_sample=True, seed=7, **options)[0]
    torch.manual_seed(7)
    theirs = hf_tokens(hf, PROMPT, max_new_tokens=30, do_sample=True, top_k=options.get("top_k", 0),
                       top_p=options.get("top_p", 1.0), temperature=options.get("temperature", 1.0),
                       repetition_penalty=options.get("repetition_penalty", 1.0))
    assert ours == theirs


@pytest.mark.parametrize("early_stopping", [False, True, "never"])
@pytest.mark.parametrize("length_penalty", [1.0, 0.5, 2.0, -1.0])
def test_beam_search_matches_transformers(pair, early_stopping, length_penalty):
    model, hf = pair
    greedy = tokens(model, [PROMPT], max_new_tokens=12, repetition_penalty=1.3)[0]
    for eos in (None, greedy[2], greedy[8]):  # never, early and late
        config = GenerationConfig(max_new_tokens=20, num_beams=3, length_penalty=length_penalty,
                                  early_stopping=early_stopping)
        theirs = hf_tokens(hf, PROMPT, max_new_tokens=20, num_beams=3, length_penalty=length_penalty,
                           early_stopping=early_stopping, do_sample=False, eos_token_id=eos)
        assert beam_search(model, PROMPT, config, eos) == theirs


def test_beam_search_with_repetition_penalty_matches_transformers(pair):
    model, hf = pair
    config = GenerationConfig(max_new_tokens=20, num_beams=4, repetition_penalty=1.5)
    assert beam_search(model, PROMPT, config) == hf_tokens(hf, PROMPT, max_new_tokens=20, num_beams=4,
                                                           repetition_penalty=1.5, do_sample=False)


def test_one_beam_is_greedy(model):
    greedy = tokens(model, [PROMPT], max_new_tokens=25)[0]
    assert beam_search(model, PROMPT, GenerationConfig(max_new_tokens=25, num_beams=1)) == greedy
    eos = greedy[10]  # with eos, one beam stops where greedy does when the first finished beam ends the search
    one_beam = GenerationConfig(max_new_tokens=25, num_beams=1, early_stopping=True)
    assert beam_search(model, PROMPT, one_beam, eos) == greedy[:greedy.index(eos) + 1]


def test_top_k_1_sampling_is_greedy(model):
    greedy = tokens(model, [PROMPT], max_new_tokens=25)
    assert tokens(model, [PROMPT], max_new_tokens=25, do_sample=True, top_k=1, seed=3) == greedy


def test_seed_fixes_the_sample_and_leaves_global_rng_alone(model):
    state = torch.get_rng_state()
    a, b, c = (tokens(model, [PROMPT], max_new_tokens=30, do_sample=True, seed=s) for s in (1, 1, 2))
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), state)


def test_cached_decoding_equals_recomputation(model):
    """Prefill once then one token per step gives the logits of running the whole sequence every time."""
    out = tokens(model, [PROMPT], max_new_tokens=20)[0]
    seq = list(PROMPT)
    with torch.inference_mode():
        for expected in out:
            logits = model(torch.tensor([seq]))[0, -1]
            assert logits.argmax().item() == expected
            seq.append(expected)
        cache = model.new_cache(1)
        stepped = [model(torch.tensor([PROMPT]), cache)[0, -1]]
        stepped += [model(torch.tensor([[t]]), cache)[0, -1] for t in out[:-1]]
        torch.testing.assert_close(torch.stack(stepped), model(torch.tensor([seq[:-1]]))[0, len(PROMPT) - 1:])


@pytest.mark.parametrize("options", [{}, {"repetition_penalty": 1.3}])
def test_left_padded_batch_equals_each_prompt_alone(pair, options):
    model, _ = pair
    prompts = [PROMPT, PROMPT[:2], [9] * 11, PROMPT[3:]]
    alone = [tokens(model, [p], max_new_tokens=15, **options)[0] for p in prompts]
    assert tokens(model, prompts, max_new_tokens=15, **options) == alone


def test_rows_that_meet_eos_repeat_it_and_decoding_stops_when_all_have(model):
    prompts = [PROMPT, PROMPT[:3]]
    free = tokens(model, prompts, max_new_tokens=30)
    eos = free[0][4]
    out = tokens(model, prompts, eos_id=eos, max_new_tokens=30)
    for row, ref in zip(out, free):
        n = ref.index(eos) + 1 if eos in ref else len(ref)
        assert row[:n] == ref[:n] and set(row[n:]) <= {eos}
    assert len(out[0]) == max(ref.index(eos) + 1 if eos in ref else 30 for ref in free)


def test_min_new_tokens_holds_eos_back(model):
    eos = tokens(model, [PROMPT], max_new_tokens=5)[0][0]
    out = tokens(model, [PROMPT], eos_id=eos, max_new_tokens=20, min_new_tokens=6)[0]
    assert eos not in out[:6] and len(out) > 6


def test_prompt_longer_than_the_context_is_a_clear_error(model):
    with pytest.raises(LmstackError, match="prompt is 200 tokens but the model's context is 128 tokens"):
        tokens(model, [[1] * 200], max_new_tokens=5)
    assert len(tokens(model, [[1] * 120], max_new_tokens=50)[0]) == 8  # generation stops at the context end


def test_decode_layout_changes_memory_not_the_model(pair):
    model, _ = pair
    relaid = decode_layout(copy.deepcopy(model))
    for name, w in relaid.state_dict().items():
        assert torch.equal(w, model.state_dict()[name])
    qkv, proj = relaid.blocks[0].attn.qkv.weight, relaid.blocks[0].mlp.proj.weight
    assert qkv.stride() == (1, qkv.size(0)) and proj.is_contiguous()  # only the wide-output weights move
    assert relaid.config.tie_embeddings == (relaid.lm_head.weight is relaid.tok_emb.weight)
    with torch.inference_mode():
        torch.testing.assert_close(relaid(torch.tensor([PROMPT])), model(torch.tensor([PROMPT])))
    prompts = [PROMPT, PROMPT[:4]]
    assert tokens(relaid, prompts, max_new_tokens=30) == tokens(model, prompts, max_new_tokens=30)
