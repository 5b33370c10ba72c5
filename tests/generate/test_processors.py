"""Every logits processor equals transformers' processor of the same name, value for value."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (LogitsProcessorList, MinNewTokensLengthLogitsProcessor,
                                                    RepetitionPenaltyLogitsProcessor, SequenceBiasLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.processors import (DecodeState, frequency_presence, logit_bias, logits_processors, pick,
                                        repetition_penalty, sampler, seen_tokens, temperature, top_k, top_p)

V = 50


def scores(seed: int, rows: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(rows, V, generator=g) * 3
    s[:, :5] = s[:, 5:10]  # ties, which top-k must keep together
    return s


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.floats(0.05, 5.0), k=st.integers(1, V + 5), p=st.floats(0.01, 1.0))
def test_warpers_match_transformers(seed, t, k, p):
    s = scores(seed)
    assert torch.equal(temperature(s, t), TemperatureLogitsWarper(t)(None, s))
    assert torch.equal(top_k(s, k), TopKLogitsWarper(k)(None, s))
    assert torch.equal(top_p(s, p), TopPLogitsWarper(p)(None, s))


def test_top_p_keeps_the_smallest_nucleus():
    s = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(top_p(s, 0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p(s, 0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(top_p(s, 0.1)).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("penalty", [0.7, 1.0, 1.3, 2.5])
def test_repetition_penalty_matches_transformers(penalty):
    s = scores(1)
    ids = torch.randint(0, V, (4, 12), generator=torch.Generator().manual_seed(2))
    ids[:, 6:] = ids[:, :6]  # repeats count once
    ours = repetition_penalty(s, seen_tokens(ids.tolist(), V), penalty)
    assert torch.equal(ours, RepetitionPenaltyLogitsProcessor(penalty)(ids, s.clone()))
    if penalty > 1:  # a seen token never gains, an unseen one never changes
        seen = seen_tokens(ids.tolist(), V)
        assert (ours[seen] <= s[seen]).all() and torch.equal(ours[~seen], s[~seen])


@pytest.mark.parametrize("step", [0, 3])
def test_processor_list_chains_like_transformers(step):
    """Repetition penalty, min-new-tokens, temperature, top-k, top-p, in transformers' order."""
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.2,
                              min_new_tokens=2)
    s, eos, prompt_len = scores(3), 7, 5
    ids = torch.randint(0, V, (4, prompt_len + step), generator=torch.Generator().manual_seed(4))
    theirs = LogitsProcessorList([
        RepetitionPenaltyLogitsProcessor(1.2), MinNewTokensLengthLogitsProcessor(prompt_len, 2, eos),
        TemperatureLogitsWarper(0.7), TopKLogitsWarper(20), TopPLogitsWarper(0.8)])(ids, s.clone())
    processors = logits_processors(config, eos)
    assert len(processors) == 5
    assert torch.equal(processors(DecodeState(seen_tokens(ids.tolist(), V), step), s), theirs)
    eos_scores = logits_processors(GenerationConfig(min_new_tokens=2), eos)(DecodeState(None, step), s)[:, eos]
    assert torch.equal(eos_scores, torch.full((4,), -float("inf")) if step < 2 else s[:, eos])


def test_default_config_leaves_scores_untouched():
    s = scores(5)
    processors = logits_processors(GenerationConfig(), eos_id=3)
    assert len(processors) == 0 and torch.equal(processors(DecodeState(), s), s)


def test_pick_is_argmax_or_a_seeded_draw():
    s = scores(6)
    assert torch.equal(pick(s), s.argmax(-1))
    assert sampler(GenerationConfig()) is None
    config = GenerationConfig(do_sample=True, seed=11)
    draws = [pick(s, sampler(config)) for _ in range(2)]
    expected = torch.multinomial(s.softmax(-1), 1, generator=torch.Generator().manual_seed(11)).squeeze(1)
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], expected)


def test_decode_state_tracks_tokens_and_follows_beams():
    state = DecodeState.start([[1, 2], [3]], GenerationConfig(repetition_penalty=1.2), vocab_size=6)
    state.push(torch.tensor([4, 5]))
    assert state.step == 1 and state.seen.nonzero().tolist() == [[0, 1], [0, 2], [0, 4], [1, 3], [1, 5]]
    state.reorder(torch.tensor([1, 1]))
    assert torch.equal(state.seen[0], state.seen[1]) and state.seen[0].nonzero().flatten().tolist() == [3, 5]
    assert DecodeState.start([[1]], GenerationConfig(), vocab_size=6).seen is None


def test_frequency_and_presence_penalties_follow_openai_formula():
    """logit - f * count - p * (count > 0), counting generated tokens only (the prompt does not count)."""
    config = GenerationConfig(frequency_penalty=0.7, presence_penalty=-0.4)
    state = DecodeState.start([[1, 2, 2], [3]], config, vocab_size=V)
    assert state.seen is None and state.counts.shape == (2, V) and not state.counts.any()
    generated = [[4, 9], [4, 4]]
    for step in zip(*generated):
        state.push(list(step))
    s = scores(7, rows=2)
    expected = s.clone()
    for row, tokens in enumerate(generated):
        for token in set(tokens):
            expected[row, token] -= 0.7 * tokens.count(token) - 0.4
    assert torch.allclose(logits_processors(config)(state, s), expected, atol=1e-6)
    state.reorder(torch.tensor([1, 1]))
    assert torch.equal(state.counts[0], state.counts[1]) and state.counts[0, 4] == 2


def test_logit_bias_matches_transformers_sequence_bias():
    bias = {3: 5.0, 11: -100.0, 40: 0.25}
    s = scores(8)
    theirs = SequenceBiasLogitsProcessor({(t,): b for t, b in bias.items()})(torch.zeros(4, 3, dtype=torch.long),
                                                                             s.clone())
    assert torch.equal(logit_bias(s, bias), theirs)
    assert torch.equal(logits_processors(GenerationConfig(logit_bias=bias))(DecodeState(), s), theirs)


def test_penalties_and_bias_sit_between_repetition_penalty_and_temperature():
    config = GenerationConfig(do_sample=True, temperature=0.5, repetition_penalty=1.3, frequency_penalty=1.0,
                              logit_bias={2: 3.0})
    state = DecodeState.start([[2, 5]], config, vocab_size=V)
    state.push([5])
    s = scores(9, rows=1)
    step = repetition_penalty(s, state.seen, 1.3)
    step = logit_bias(frequency_presence(step, state.counts, 1.0, 0.0), {2: 3.0})
    assert torch.equal(logits_processors(config)(state, s), temperature(step, 0.5))


@pytest.mark.parametrize("fields,words", [
    ({"frequency_penalty": 2.5}, "frequency_penalty must be in [-2, 2], got 2.5"),
    ({"presence_penalty": float("nan")}, "presence_penalty must be a finite number"),
    ({"temperature": float("nan"), "do_sample": True}, "temperature must be a finite number"),
    ({"top_p": float("inf")}, "top_p must be a finite number"),
    ({"logit_bias": {5: 101}}, "logit_bias[5] must be a number in [-100, 100]"),
    ({"logit_bias": {-1: 1}}, "logit_bias: keys must be token ids"),
    ({"seed": 2**80}, "seed must be an integer in [-2**63, 2**63 - 1]"),
])
def test_config_names_the_bad_field(fields, words):
    with pytest.raises(LmstackError) as e:
        GenerationConfig(**fields)
    assert words in str(e.value)
