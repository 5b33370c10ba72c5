"""A combination of logit sources is a logit source: decode with several models at once.

``Mixture`` reads every member (each with a cache of its own, so members may differ in size, family or
adapter, as long as they share the vocabulary) and mixes their next-token scores linearly:

    z = sum_i w_i z_i                                   (raw logits)
    z = sum_i w_i log p_i     over V_head, else -inf    (``normalize``, with the ``plausible`` cutoff alpha)

Two decoding-time methods are such mixtures:

* DExperts (Liu et al. 2021, arXiv:2105.03023): steer a base model towards an expert and away from an
  anti-expert, z = z_base + a (z_expert - z_anti).
* Contrastive decoding (Li et al. 2022, arXiv:2210.15097): prefer what a large expert knows and a small
  amateur does not, log p_expert - log p_amateur, among the tokens the expert itself finds plausible,
  V_head = {x : p_expert(x) >= alpha max_w p_expert(w)}.

Any decoder (greedy, sampling, beam, the serving engine) decodes a mixture as it decodes one model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.generate.processors import top_p as top_p_filter
from lmstack.model.blocks import KVCache
from lmstack.model.source import LogitSource, to_source

# What a token outside a cut (DExperts' base nucleus, contrastive decoding's plausible head) scores below the rest:
# exp(-1e4) underflows to probability 0, yet a row a later processor leaves with nothing inside its cut (eos under
# min_new_tokens) still ranks the tokens outside instead of the draw failing.
OUTSIDE = 1e4


class Caches:
    """One cache per member source. A serving engine's slot operations apply to each of them."""

    def __init__(self, members: list[KVCache]):
        self.members = members

    def start(self, slot: int) -> None:
        for cache in self.members:
            cache.start(slot)

    def use(self, start: int, stop: int) -> None:
        for cache in self.members:
            cache.use(start, stop)

    def move(self, src: int, dst: int) -> None:
        for cache in self.members:
            cache.move(src, dst)


class Mixture:
    """The logit source sum_i weights[i] * z_i over ``sources`` (models or sources); ``normalize`` mixes
    log-probabilities instead of logits, and ``plausible`` (alpha in (0, 1]) keeps only the tokens to which
    the first source gives at least alpha times its top probability (the others score its log-probability
    minus ``OUTSIDE``)."""

    def __init__(self, sources: list[nn.Module | LogitSource], weights: list[float], normalize: bool = False,
                 plausible: float | None = None):
        self.sources = [to_source(s) for s in sources]
        if not self.sources or len(self.sources) != len(weights):
            raise LmstackError(f"a mixture needs one weight per source, got {len(sources)} sources and "
                               f"{len(weights)} weights")
        if len({s.vocab_size for s in self.sources}) != 1:
            sizes = [s.vocab_size for s in self.sources]
            raise LmstackError(f"mixed sources must share a vocabulary, got sizes {sizes}")
        if plausible is not None and not 0 < plausible <= 1:
            raise LmstackError(f"the plausibility cutoff must be in (0, 1], got {plausible}")
        self.weights, self.normalize, self.plausible = list(weights), normalize, plausible
        self.vocab_size = self.sources[0].vocab_size
        self.context = min(s.context for s in self.sources)
        self.device = self.sources[0].device

    def new_cache(self, batch_size: int, max_len: int | None = None, cache_cls: type[KVCache] = KVCache) -> Caches:
        return Caches([s.new_cache(batch_size, max_len or self.context, cache_cls) for s in self.sources])

    def prefill(self, idx: torch.Tensor, cache: Caches, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.mix([s.prefill(idx, c, positions, key_mask) for s, c in zip(self.sources, cache.members)])

    def step(self, tokens: torch.Tensor, cache: Caches, positions: torch.Tensor | None = None,
             key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.mix([s.step(tokens, c, positions, key_mask) for s, c in zip(self.sources, cache.members)])

    def reorder(self, cache: Caches, index: torch.Tensor) -> None:
        for s, c in zip(self.sources, cache.members):
            s.reorder(c, index)

    def mix(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """The mixed fp32 scores [B, V] of the members' logits (each [B, V])."""
        z = [x.float().log_softmax(dim=-1) if self.normalize else x.float() for x in logits]
        mixed = z[0] * self.weights[0]
        for w, x in zip(self.weights[1:], z[1:]):
            mixed = mixed + w * x
        if self.plausible is not None:
            logp = z[0] if self.normalize else z[0].log_softmax(dim=-1)
            head = logp >= logp.max(dim=-1, keepdim=True).values + math.log(self.plausible)
            mixed = torch.where(head, mixed, logp - OUTSIDE)
        return mixed


class DExperts(Mixture):
    """z_base + sum_i w_i z_i (the experts' weights +alpha, the anti-experts' -alpha) over the base's top-p
    nucleus (``top_p`` = 1: every token): the paper's "top-p filtered" base, the mixture then sampled whole."""

    def __init__(self, base: nn.Module | LogitSource, experts: list[nn.Module | LogitSource], weights: list[float],
                 top_p: float = 1.0):
        if not 0 < top_p <= 1:
            raise LmstackError(f"DExperts' base nucleus top_p must be in (0, 1], got {top_p}")
        super().__init__([base, *experts], [1.0, *weights])
        self.top_p = top_p

    def mix(self, logits: list[torch.Tensor]) -> torch.Tensor:
        mixed = super().mix(logits)
        if self.top_p >= 1:
            return mixed
        return torch.where(top_p_filter(logits[0].float(), self.top_p).isinf(), mixed - OUTSIDE, mixed)


def finite(value: object, name: str) -> float:
    """``value`` as a float if it is a finite number, else one line naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LmstackError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def dexperts(base: nn.Module | LogitSource, expert: nn.Module | LogitSource | None = None,
             anti_expert: nn.Module | LogitSource | None = None, alpha: float = 1.0, top_p: float = 1.0) -> DExperts:
    """DExperts (Liu et al. 2021, eq. 1): z = z_base + alpha (z_expert - z_anti) inside the base's top-p nucleus;
    alpha = 0 is the base model, alpha < 0 steers the other way; either expert may be left out."""
    alpha = finite(alpha, "alpha")
    members = [(m, w) for m, w in ((expert, alpha), (anti_expert, -alpha)) if m is not None]
    if not members:
        raise LmstackError("DExperts needs an expert, an anti-expert or both")
    return DExperts(base, [m for m, _ in members], [w for _, w in members], top_p)


def contrastive(expert: nn.Module | LogitSource, amateur: nn.Module | LogitSource, alpha: float = 0.1) -> Mixture:
    """Contrastive decoding (Li et al. 2022): log p_expert - log p_amateur over the tokens with
    p_expert >= alpha * max p_expert (the rest: probability 0)."""
    return Mixture([expert, amateur], [1.0, -1.0], normalize=True, plausible=alpha)
