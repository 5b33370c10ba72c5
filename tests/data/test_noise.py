"""Noise functions of the denoising objectives: T5 span corruption, BART infilling, UL2; sentinels and pairs."""

from __future__ import annotations

import math

import pytest
import torch

from lmstack.data.noise import (UL2_DENOISERS, Denoiser, draw_denoiser, measure_noise, noise_counts,
                                poisson_span_lengths, random_spans_noise_mask, raw_length_for, span_corruption,
                                span_corruption_lengths, text_infilling, ul2_example)
from lmstack.data.pairs import read_pairs
from lmstack.errors import LmstackError
from lmstack.text.tokenizer import add_sentinels, train_char

SENTINELS = list(range(1000, 900, -1))  # <extra_id_0> highest, as in T5


def runs(mask: torch.Tensor) -> list[tuple[bool, int]]:
    out = []
    for v in mask.tolist():
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


def t5_counts(length: int, density: float, mean: float) -> tuple[int, int]:
    """T5's random_spans_noise_mask arithmetic, written out as in t5/data/preprocessors.py."""
    length = max(length, 2)
    num_noise = int(round(length * density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = int(round(num_noise / mean))
    return num_noise, max(num_spans, 1)


@pytest.mark.parametrize("density,mean", [(0.15, 3.0), (0.5, 3.0), (0.5, 32.0), (0.15, 8.0)])
def test_noise_mask_counts_are_t5s(density, mean):
    rng = torch.Generator().manual_seed(0)
    for length in list(range(3, 80)) + [128, 255, 568, 1000]:
        mask = random_spans_noise_mask(length, density, mean, rng)
        n, k = t5_counts(length, density, mean)
        assert noise_counts(length, density, mean) == (n, k)
        assert int(mask.sum()) == n
        r = runs(mask)
        noise_spans = [c for v, c in r if v]
        assert len(noise_spans) == min(k, n, length - n)  # every span non-empty; k spans when there is room
        assert r[0][0] is False and r[-1][0] is True  # T5's layout: non-noise first, ends in noise (no roll)


def test_known_t5_lengths():
    # T5's pretraining setting: 568 raw tokens -> 512 inputs, 114 targets (random_spans_helper)
    assert span_corruption_lengths(568, 0.15, 3.0) == (512, 114)
    assert raw_length_for(512, 10_000, 0.15, 3.0) == 568


def test_span_corruption_inverts_and_orders_sentinels():
    tokens = torch.arange(10, 110)
    inputs, targets = span_corruption(tokens, SENTINELS, eos_id=1, rng=torch.Generator().manual_seed(3))
    assert inputs[-1] == 1 and targets[-1] == 1
    n, k = noise_counts(100, 0.15, 3.0)
    assert (len(inputs), len(targets)) == span_corruption_lengths(100, 0.15, 3.0) == (100 - n + k + 1, n + k + 1)
    used = [int(t) for t in inputs if t >= 900]
    assert used == SENTINELS[:k]  # sentinel i marks span i, in order
    assert targets[0] == SENTINELS[0]
    # put the spans back: the original sequence
    spans, current = {}, None
    for t in targets[:-1].tolist():
        if t >= 900:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    restored = [u for t in inputs[:-1].tolist() for u in (spans[t] if t >= 900 else [t])]
    assert restored == tokens.tolist()


def test_too_few_sentinels_is_one_line():
    with pytest.raises(LmstackError, match="--sentinels"):
        span_corruption(torch.arange(200), SENTINELS[:3], 1, 0.5, 3.0, torch.Generator().manual_seed(0))


def test_seeded_determinism():
    tokens = torch.arange(300)
    a = span_corruption(tokens, SENTINELS, 1, rng=torch.Generator().manual_seed(5))
    b = span_corruption(tokens, SENTINELS, 1, rng=torch.Generator().manual_seed(5))
    c = span_corruption(tokens, SENTINELS, 1, rng=torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])
    d = text_infilling(tokens, 7, 1, rng=torch.Generator().manual_seed(5))
    e = text_infilling(tokens, 7, 1, rng=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(d, e))


def test_measured_density_and_span_length():
    rng = torch.Generator().manual_seed(0)
    stats = measure_noise(random_spans_noise_mask(568, 0.15, 3.0, rng) for _ in range(50))
    assert stats["noise_density"] == pytest.approx(85 / 568)  # round(568 * 0.15) = 85 each
    assert stats["mean_span_length"] == pytest.approx(85 / 28)  # round(85 / 3) = 28 spans


def test_poisson_lengths_sum_to_budget_and_have_mean_three():
    rng = torch.Generator().manual_seed(0)
    for budget in (1, 7, 30, 151):
        assert int(poisson_span_lengths(budget, 3.0, rng).sum()) == budget
    draws = torch.cat([poisson_span_lengths(3000, 3.0, rng)[:-1] for _ in range(5)]).float()  # untrimmed draws
    assert draws.mean().item() == pytest.approx(3.0, abs=0.1)
    assert (draws == 0).float().mean().item() == pytest.approx(math.exp(-3), abs=0.015)  # zero-length: inserts


def test_text_infilling_masks_thirty_percent_one_mask_per_span():
    rng = torch.Generator().manual_seed(1)
    mask_id = 5
    for L in (10, 50, 200):
        tokens = torch.arange(100, 100 + L)
        inputs, targets = text_infilling(tokens, mask_id, 1, rng=rng)
        assert torch.equal(targets[:-1], tokens) and targets[-1] == 1 and inputs[-1] == 1
        kept = [t for t in inputs[:-1].tolist() if t != mask_id]
        assert len(kept) == L - math.ceil(0.3 * L)  # exactly ceil(0.3 L) tokens removed
        it = iter(tokens.tolist())
        assert all(any(t == u for u in it) for t in kept)  # the rest keep their order
        assert (inputs == mask_id).sum() >= 1


def test_ul2_modes_and_weights():
    rng = torch.Generator().manual_seed(0)
    modes = {"R": 1, "X": 2, "S": 3}
    tokens = torch.arange(100, 228)
    for d in UL2_DENOISERS:
        inputs, targets = ul2_example(tokens, d, modes[d.mode], SENTINELS, 9, rng)
        assert inputs[0] == modes[d.mode] and inputs[-1] == 9 and targets[-1] == 9
        if d.mode == "S":  # prefix then suffix: the window itself
            assert torch.cat([inputs[1:-1], targets[:-1]]).tolist() == tokens.tolist()
    mix = [Denoiser("R", weight=3.0), Denoiser("S", weight=1.0)]
    drawn = [draw_denoiser(mix, rng).mode for _ in range(2000)]
    assert drawn.count("R") / 2000 == pytest.approx(0.75, abs=0.03)


def test_sentinels_at_the_end_extra_id_0_highest():
    tok = train_char(["hello world"])
    assert add_sentinels(tok, 0) is tok  # the default changes nothing
    added = add_sentinels(tok, 10)
    assert added.vocab_size == tok.vocab_size + 10 + 4
    assert added.sentinel_ids == list(range(added.vocab_size - 1, added.vocab_size - 11, -1))
    assert added.token_to_id("<mask>") == tok.vocab_size and added.token_to_id("[X]") == tok.vocab_size + 3
    assert added.encode("h<extra_id_0>") == [tok.encode("h")[0], added.vocab_size - 1]
    assert tok.encode("hello") == added.encode("hello") and tok.sentinel_ids == []


def test_pairs_and_bad_records(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text('{"input": "a", "output": "b"}\n{"instruction": "say", "input": "x", "output": "y"}\n')
    assert read_pairs(good) == [("a", "b"), ("say\n\nx", "y")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{"input": "a"}\n')
    with pytest.raises(LmstackError, match=r"bad.jsonl:2: .*'output' is missing"):
        read_pairs(bad)
