"""Speculative decoding: greedy output identical to plain greedy (with a draft model, with prompt lookup, with the
processors that read history), the acceptance rule preserves the target's distribution on a toy case, a draft that
is the target keeps every token, and bad drafts fail in one line."""

from __future__ import annotations

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.generate.api import generate_cli
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.speculative import DraftModel, PromptLookup, SpeculativeStats, speculative_decode, verify
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import train_bpe

from .conftest import random_model

PROMPTS = [[5, 17, 3, 44, 9], [60, 2, 2, 71, 30, 5, 17, 3]]


def plain(model, prompt, config, eos=None) -> list[int]:
    return [int(t) for t in decode(model, [prompt], config, eos)]


def spec(model, prompt, config, drafter, eos=None, stats=None) -> list[int]:
    return list(speculative_decode(model, prompt, config, drafter, eos, stats))


@pytest.fixture(scope="module")
def target():
    return random_model("llama-tiny", seed=0)


@pytest.fixture(scope="module")
def draft():
    return random_model("gpt2-tiny", seed=5)


@pytest.mark.parametrize("settings", [{}, {"repetition_penalty": 1.4, "min_new_tokens": 5},
                                      {"frequency_penalty": 0.7, "presence_penalty": 0.3}])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_greedy_with_a_draft_model_is_plain_greedy(target, draft, settings, k):
    config = GenerationConfig(max_new_tokens=40, **settings)
    for prompt in PROMPTS:
        stats = SpeculativeStats()
        assert spec(target, prompt, config, DraftModel(draft, num_draft=k), stats=stats) == plain(target, prompt,
                                                                                                  config)
        assert stats.tokens == 40 and stats.passes <= 40


def test_greedy_with_prompt_lookup_is_plain_greedy_and_stops_at_eos(target):
    config = GenerationConfig(max_new_tokens=60)
    repetitive = [5, 17, 3, 44, 9, 5, 17, 3, 44, 9, 5, 17]
    for prompt in PROMPTS + [repetitive]:
        assert spec(target, prompt, config, PromptLookup(max_ngram=3, num_draft=5)) == plain(target, prompt, config)
    reference = plain(target, repetitive, config)
    eos = reference[10]
    out = spec(target, repetitive, config, PromptLookup(), eos=eos)
    assert out == reference[:reference.index(eos) + 1]


def test_the_target_as_its_own_draft_keeps_every_token(target):
    stats = SpeculativeStats()
    config = GenerationConfig(max_new_tokens=30)
    assert spec(target, PROMPTS[0], config, DraftModel(target, num_draft=4), stats=stats) == plain(target, PROMPTS[0],
                                                                                                   config)
    assert stats.acceptance == 1.0 and stats.passes == 7  # the first token, 5 rounds of 4 + 1, then 3 + 1
    sampled = GenerationConfig(max_new_tokens=30, do_sample=True, temperature=0.9, top_k=20, seed=3)
    stats = SpeculativeStats()
    out = spec(target, PROMPTS[0], sampled, DraftModel(target, num_draft=4), stats=stats)
    assert len(out) == 30 and stats.acceptance == 1.0  # p == q: u * q < p always holds


@pytest.mark.parametrize("point_mass", [False, True])
def test_acceptance_rule_gives_the_target_distribution(point_mass):
    """One draft token from q (or a fixed token), then verify: the first token out is distributed as p."""
    p = torch.tensor([0.5, 0.2, 0.2, 0.1])
    q = torch.tensor([0.1, 0.6, 0.1, 0.2])
    logits = torch.stack([p.log(), torch.tensor([0.0, 0.0, 0.0, 0.0])])  # row 1 (after the draft) is unused here
    rng = torch.Generator().manual_seed(0)
    n, counts = 20_000, torch.zeros(4)
    for _ in range(n):
        d = 1 if point_mass else int(torch.multinomial(q, 1, generator=rng))
        kept, token = verify(logits, [d], None if point_mass else q[None], True, rng)
        counts[d if kept else token] += 1
    assert torch.allclose(counts / n, p, atol=0.017)  # ~5 standard errors


def test_sampled_speculative_decoding_matches_plain_sampling_in_distribution(target, draft):
    """The first two tokens' joint distribution, speculative vs plain sampling (seeds differ run to run)."""
    config = GenerationConfig(max_new_tokens=2, do_sample=True, temperature=1.5)
    prompt = PROMPTS[0]
    with torch.no_grad():
        first = (target(torch.tensor([prompt]))[0, -1] / 1.5).softmax(-1)
    n, counts = 600, torch.zeros(first.numel())
    for seed in range(n):
        out = spec(target, prompt, GenerationConfig(**{**config.__dict__, "seed": seed}), DraftModel(draft, 2))
        counts[out[0]] += 1
    top = first.topk(3).indices
    assert torch.allclose(counts[top] / n, first[top], atol=0.07)  # ~3.5 standard errors


def test_bad_drafts_fail_in_one_line(target):
    config = GenerationConfig(max_new_tokens=5)
    with pytest.raises(LmstackError, match="vocabulary has 50 tokens, the target's 97"):
        spec(target, PROMPTS[0], config, DraftModel(random_model("gpt2-tiny", vocab_size=50)))
    with pytest.raises(LmstackError, match="num_draft must be at least 1"):
        DraftModel(target, num_draft=0)
    with pytest.raises(LmstackError, match="max_ngram >= 1"):
        PromptLookup(max_ngram=0)
    with pytest.raises(LmstackError, match="not beam search"):
        spec(target, PROMPTS[0], GenerationConfig(num_beams=2), PromptLookup())


def test_generate_cli_with_a_draft_or_prompt_lookup_prints_the_plain_text(text_model, tokenizer, tmp_path):
    target = save_model(text_model, tmp_path / "target", tokenizer=tokenizer)
    small = save_model(random_model("llama-tiny", seed=2, vocab_size=tokenizer.vocab_size), tmp_path / "draft",
                       tokenizer=tokenizer)
    prompt = ["hello world, 你好，世界！ hello world,"]
    plain_out = generate_cli(prompt, model=str(target), max_new_tokens=20, stream=False)
    for extra in ({"draft": str(small), "num_draft": 3}, {"prompt_lookup": 2}):
        out = generate_cli(prompt, model=str(target), max_new_tokens=20, stream=False, **extra)
        assert out["completion"] == plain_out["completion"]
        assert out["speculative"]["target_passes"] <= out["tokens"] + 1
    other = save_model(random_model("llama-tiny", vocab_size=tokenizer.vocab_size), tmp_path / "other",
                       tokenizer=train_bpe(["another text, another tokenizer"] * 20, vocab_size=tokenizer.vocab_size))
    with pytest.raises(LmstackError, match="its tokenizer differs"):
        generate_cli(prompt, model=str(target), draft=str(other), stream=False)
    with pytest.raises(LmstackError, match="one prompt, no beams"):
        generate_cli(prompt * 2, model=str(target), prompt_lookup=2, stream=False)
