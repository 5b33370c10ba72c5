"""Noise functions of the denoising objectives: a clean token sequence -> (encoder inputs, decoder targets).

* ``random_spans_noise_mask``: T5's span mask (Raffel et al. 2020, ``t5.data.preprocessors``): of L tokens,
  ``n = round(L * density)`` (clamped to [1, L-1]) are noise, in ``k = max(1, round(n / mean_span))`` spans; the
  noise and non-noise tokens are each cut into k non-empty segments at random and interleaved (non-noise first),
  so the mask ends in noise. ``span_corruption`` turns it into T5's pair: each noise span becomes one sentinel
  in the inputs; the targets are each sentinel followed by its span (then eos).
* ``text_infilling``: BART's text infilling (Lewis et al. 2020, fairseq ``DenoisingDataset`` with
  ``mask_length=span-poisson``, ``replace_length=1``): span lengths ~ Poisson(3) drawn until they cover
  ``ceil(0.3 L)`` tokens (the last trimmed to the budget), each span replaced by ONE ``<mask>``, a zero-length
  span inserting a ``<mask>``; the targets are the original sequence. Spans are placed at token level (not whole
  words), non-overlapping, so exactly ``ceil(0.3 L)`` tokens are masked; no random-token replacement.
* ``ul2_example``: a UL2 mixture of denoisers (Tay et al. 2022): R (regular spans), X (extreme: long spans or
  high density) and S (sequential: prefix -> suffix), each input prefixed by its mode token ``[R]`` / ``[X]`` /
  ``[S]``; a denoiser is drawn per example by its weight.

Every function draws only from the ``torch.Generator`` it is given, so a seeded (or resumed) run corrupts the
same tokens. Sentinel ``i`` is ``sentinels[i]`` (the tokenizer's ``<extra_id_i>``, T5's order).
"""

from __future__ import annotations

import dataclasses

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from lmstack.errors import LmstackError


def _segmentation(num_items: int, num_segments: int, rng: torch.Generator) -> torch.Tensor:
    """T5's ``_random_segmentation``: ``num_items`` cut into ``num_segments`` non-empty runs at random; their
    lengths [num_segments]. The first segment starts at 0, and ``num_segments - 1`` of the ``num_items - 1`` gaps
    between items (a random permutation of that indicator) start the others."""
    starts = (torch.arange(num_items - 1) < num_segments - 1).long()
    starts = starts[torch.randperm(num_items - 1, generator=rng)]
    segment = torch.cat([torch.zeros(1, dtype=torch.long), starts]).cumsum(0)
    return torch.bincount(segment, minlength=num_segments)


def noise_counts(length: int, density: float, mean_span: float) -> tuple[int, int]:
    """(noise tokens, noise spans) of T5's ``random_spans_noise_mask`` for a sequence of ``length``:
    n = min(max(round(L * density), 1), L - 1), k = max(round(n / mean_span), 1) (L at least 2)."""
    length = max(length, 2)
    n = min(max(round(length * density), 1), length - 1)
    return n, max(round(n / mean_span), 1)


def random_spans_noise_mask(length: int, density: float = 0.15, mean_span: float = 3.0,
                            rng: torch.Generator | None = None) -> torch.Tensor:
    """T5's noise mask [length] bool (True = noise): ``noise_counts`` tokens in that many spans, the non-noise
    and noise tokens each segmented at random and interleaved non-noise first (no random roll)."""
    if not 0 < density < 1 or mean_span <= 0:
        raise LmstackError(f"noise density must be in (0, 1) and mean span length positive, got {density}, "
                           f"{mean_span}")
    rng = rng if rng is not None else torch.Generator().manual_seed(0)
    full = max(length, 2)
    n, k = noise_counts(length, density, mean_span)
    k = min(k, n, full - n)  # the segmentation needs k non-empty runs of each kind
    noise = _segmentation(n, k, rng)
    clean = _segmentation(full - n, k, rng)
    spans = torch.stack([clean, noise], dim=1).flatten()  # [2k]: clean_0, noise_0, clean_1, noise_1, ...
    is_noise = torch.repeat_interleave(torch.arange(2 * k) % 2 == 1, spans)
    return is_noise[:length]


def span_corruption(tokens: torch.Tensor, sentinels: Sequence[int], eos_id: int | None, density: float = 0.15,
                    mean_span: float = 3.0, rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """T5's span corruption of ``tokens`` [L]: inputs = the clean tokens with each noise span replaced by its
    sentinel; targets = sentinel_i + noise span i for every span (T5's ``noise_span_to_unique_sentinel`` and
    ``nonnoise_span_to_unique_sentinel``); both end in ``eos_id`` (None: no eos)."""
    mask = random_spans_noise_mask(len(tokens), density, mean_span, rng)
    return spans_to_sentinels(tokens, mask, sentinels, eos_id)


def spans_to_sentinels(tokens: torch.Tensor, mask: torch.Tensor, sentinels: Sequence[int],
                       eos_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of a noise ``mask``: a span's first token becomes its sentinel in the inputs (the rest
    are dropped); in the targets each clean span is replaced by the sentinel of the noise span after it."""
    starts = mask & ~torch.cat([torch.zeros(1, dtype=torch.bool), mask[:-1]])  # first token of each noise span
    span = starts.long().cumsum(0) - 1  # the noise span index of each token (-1 before the first)
    if int(starts.sum()) > len(sentinels):
        raise LmstackError(f"{int(starts.sum())} noise spans need as many sentinel tokens, the tokenizer has "
                           f"{len(sentinels)}; run lmstack prepare with a larger --sentinels")
    ids = torch.as_tensor(list(sentinels), dtype=torch.long)
    ends = [] if eos_id is None else [torch.tensor([eos_id])]
    inputs = torch.where(starts, ids[span.clamp(min=0)], tokens)[~mask | starts]
    targets = torch.stack([ids[span.clamp(min=0)], tokens], dim=1)  # [L, 2]: (sentinel, token) per position
    keep = torch.stack([starts, mask], dim=1)  # a span's first token carries its sentinel before it
    return torch.cat([inputs, *ends]), torch.cat([targets[keep], *ends])


def poisson_span_lengths(budget: int, lam: float, rng: torch.Generator) -> torch.Tensor:
    """fairseq's span lengths: Poisson(``lam``) draws until they sum to at least ``budget``; the first draw that
    reaches it is trimmed to the remainder and the rest dropped, so the lengths sum to ``budget`` exactly."""
    lengths = torch.poisson(torch.full((max(budget, 1),), float(lam)), generator=rng).long()
    while lengths.sum() < budget:
        lengths = torch.cat([lengths, torch.poisson(torch.full((budget,), float(lam)), generator=rng).long()])
    cum = lengths.cumsum(0)
    i = int((cum < budget).sum())  # the first index where the running sum reaches the budget
    lengths = lengths[: i + 1].clone()
    lengths[i] = budget - (int(cum[i - 1]) if i > 0 else 0)
    return lengths


def text_infilling(tokens: torch.Tensor, mask_id: int, eos_id: int | None, ratio: float = 0.3,
                   lam: float = 3.0, rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BART's text infilling of ``tokens`` [L]: ``ceil(ratio * L)`` tokens in spans of Poisson(``lam``) lengths,
    each span (a zero-length one too: an insertion) replaced by one ``mask_id``; the spans, in random order, sit
    at random non-overlapping places (the clean tokens split into k + 1 possibly empty gaps by stars and bars).
    Returns (inputs, targets = tokens), both + ``eos_id`` (None: no eos)."""
    rng = rng if rng is not None else torch.Generator().manual_seed(0)
    L = len(tokens)
    budget = math.ceil(ratio * L)
    lengths = poisson_span_lengths(budget, lam, rng)
    lengths = lengths[torch.randperm(len(lengths), generator=rng)]
    k, clean = len(lengths), L - budget
    bars = torch.randperm(clean + k, generator=rng)[:k].sort().values  # k bars among clean + k slots
    gaps = torch.diff(torch.cat([torch.tensor([-1]), bars, torch.tensor([clean + k])])) - 1  # [k + 1]
    pieces, at = [], 0
    for i in range(k + 1):
        pieces.append(tokens[at: at + int(gaps[i])])
        at += int(gaps[i])
        if i < k:
            pieces.append(torch.tensor([mask_id]))
            at += int(lengths[i])
    ends = [] if eos_id is None else [torch.tensor([eos_id])]
    return torch.cat(pieces + ends).long(), torch.cat([tokens, *ends]).long()


# ----------------------------------------------------------------------------------------------- UL2

@dataclass(frozen=True)
class Denoiser:
    """One UL2 denoiser: ``mode`` R / X (span corruption with ``mean_span`` and ``density``) or S (prefix-LM:
    the targets are the suffix after a uniform split point); drawn with probability proportional to ``weight``."""
    mode: Literal["R", "X", "S"]
    mean_span: float = 3.0
    density: float = 0.15
    weight: float = 1.0


# UL2's mixture, small: R (mu=3, r=0.15), X (mu=32, r=0.5) and (mu=3, r=0.5), S; S has half the weight, as UL2's
# paper gives the sequential denoiser about a fifth to a quarter of the examples.
UL2_DENOISERS = (Denoiser("R", 3, 0.15, 2.0), Denoiser("X", 32, 0.5, 1.0), Denoiser("X", 3, 0.5, 1.0),
                 Denoiser("S", weight=1.0))
MODE_TOKENS = {"R": "[R]", "S": "[S]", "X": "[X]"}


def reweighted(weights: Sequence[float], denoisers: Sequence[Denoiser] = UL2_DENOISERS) -> tuple[Denoiser, ...]:
    """``denoisers`` with the given weights, in order; a denoiser of weight 0 is left out."""
    return tuple(dataclasses.replace(d, weight=float(w)) for d, w in zip(denoisers, weights) if w > 0)


def prefix_split(tokens: torch.Tensor, eos_id: int | None, rng: torch.Generator,
                 max_prefix: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The S denoiser (prefix-LM as a pair): a split point p uniform in [1, L-1] (at most ``max_prefix``):
    inputs = tokens[:p], targets = tokens[p:], both + ``eos_id``."""
    L = len(tokens)
    hi = min(L - 1, max_prefix if max_prefix is not None else L - 1)
    p = int(torch.randint(1, max(hi, 1) + 1, (1,), generator=rng))
    ends = [] if eos_id is None else [torch.tensor([eos_id])]
    return torch.cat([tokens[:p], *ends]), torch.cat([tokens[p:], *ends])


def ul2_example(tokens: torch.Tensor, denoiser: Denoiser, mode_id: int, sentinels: Sequence[int],
                eos_id: int | None, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One UL2 example of ``tokens`` by ``denoiser``: its inputs prefixed with the mode token ``mode_id``."""
    if denoiser.mode == "S":
        inputs, targets = prefix_split(tokens, eos_id, rng)
    else:
        inputs, targets = span_corruption(tokens, sentinels, eos_id, denoiser.density, denoiser.mean_span, rng)
    return torch.cat([torch.tensor([mode_id]), inputs]), targets


def draw_denoiser(denoisers: Sequence[Denoiser], rng: torch.Generator) -> Denoiser:
    """A denoiser drawn with probability weight / sum of weights."""
    weights = torch.tensor([d.weight for d in denoisers], dtype=torch.float)
    return denoisers[int(torch.multinomial(weights, 1, generator=rng))]


def check_denoisers(denoisers: Sequence[Denoiser]) -> None:
    """Refuse an empty mixture, an unknown mode, a density outside (0, 1) or a weight <= 0, in one line."""
    if not denoisers:
        raise LmstackError("the UL2 mixture needs at least one denoiser")
    for d in denoisers:
        if d.mode not in MODE_TOKENS:
            raise LmstackError(f"UL2 denoiser mode {d.mode!r}: expected one of R, X, S")
        if d.weight <= 0 or not 0 < d.density < 1 or d.mean_span <= 0:
            raise LmstackError(f"UL2 denoiser {d}: weight and mean_span must be positive, density in (0, 1)")


# ----------------------------------------------------------------------------------------------- lengths

def span_corruption_lengths(length: int, density: float, mean_span: float) -> tuple[int, int]:
    """(input, target) lengths of ``span_corruption`` of ``length`` tokens, eos included: every clean token,
    one sentinel per span and eos; every noise token, one sentinel per span and eos."""
    n, k = noise_counts(length, density, mean_span)
    k = min(k, n, max(length, 2) - n)
    return length - n + k + 1, n + k + 1


def raw_length_for(inputs_length: int, targets_length: int, density: float, mean_span: float) -> int:
    """The most tokens whose span corruption fits ``inputs_length`` encoder and ``targets_length`` decoder
    positions (T5's ``random_spans_helper``, with a cap on the targets too)."""
    length = 2
    while all(a <= b for a, b in zip(span_corruption_lengths(length + 1, density, mean_span),
                                     (inputs_length, targets_length))):
        length += 1
    return length


def measure_noise(masks: Iterable[torch.Tensor]) -> dict[str, float]:
    """Achieved noise density (noise tokens / tokens) and mean noise-span length (noise tokens / spans) over
    ``masks`` (bool [L] each), as measured over a corpus by ``bench/objectives.py``."""
    tokens = noise = spans = 0
    for mask in masks:
        mask = mask.bool()
        tokens += mask.numel()
        noise += int(mask.sum())
        spans += int((mask & ~torch.cat([torch.zeros(1, dtype=torch.bool), mask[:-1]])).sum())
    return {"tokens": tokens, "noise_density": noise / max(tokens, 1), "mean_span_length": noise / max(spans, 1),
            "spans": spans}
