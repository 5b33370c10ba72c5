"""The DPO family: losses on per-sequence log-probabilities of answers, with and without a reference model.

Notation: for a pair (prompt x, chosen y_c, rejected y_r), pi_c = log pi(y_c | x) summed over the answer's tokens,
ref_c the same under the frozen reference, n_c the answer's token count (likewise for y_r), and

    h = (pi_c - ref_c) - (pi_r - ref_r)            the difference of the implicit rewards' log-ratios

Every pair loss takes a ``PairLogps`` and ``LossParams`` and returns ``LossOut``: the per-pair losses [B] (the
objective minimises their mean) and the implicit rewards of chosen and rejected [B] (detached, for logging):
beta (pi - ref) with a reference, beta * (pi / n) for the reference-free SimPO and ORPO (as trl logs them).
``PAIR_LOSSES`` maps each ``loss_type`` to its function; ``kto`` is the unpaired one. Each equals trl 1.16's
implementation on the same inputs (tests/align/test_losses.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from lmstack.errors import LmstackError


@dataclass(frozen=True)
class PairLogps:
    """Per-sequence log-probabilities [B] of a batch of pairs: the policy's (differentiable), the reference's
    (None for reference-free losses), and the answers' token counts (for length normalisation)."""
    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor | None
    ref_rejected: torch.Tensor | None
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor


@dataclass(frozen=True)
class LossParams:
    """The family's hyper-parameters (trl's names and defaults): ``beta`` the KL strength (IPO's tau; SimPO's
    reward scale, typically 2-10), ``label_smoothing`` epsilon (cDPO, rDPO), ``simpo_gamma`` SimPO's target
    margin, ``orpo_lambda`` ORPO's weight of the odds-ratio term, KTO's desirable / undesirable weights, and
    ``rpo_alpha`` the weight of the chosen answer's per-token NLL added to a pair loss (RPO, Pang et al. 2024,
    trl's ``rpo_alpha``: the policy also learns to write the chosen answers, not only to rank them)."""
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    orpo_lambda: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    rpo_alpha: float = 0.0

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise LmstackError(f"beta must be positive, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise LmstackError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if min(self.orpo_lambda, self.desirable_weight, self.undesirable_weight, self.rpo_alpha) < 0:
            raise LmstackError("orpo_lambda, rpo_alpha and the KTO weights must be non-negative")


class LossOut(NamedTuple):
    losses: torch.Tensor  # [B]
    chosen_rewards: torch.Tensor  # [B], detached
    rejected_rewards: torch.Tensor  # [B], detached


def _logratios(lp: PairLogps) -> tuple[torch.Tensor, torch.Tensor]:
    return lp.chosen - lp.ref_chosen, lp.rejected - lp.ref_rejected


def _rewards(losses: torch.Tensor, lp: PairLogps, p: LossParams) -> LossOut:
    chosen, rejected = _logratios(lp)
    return LossOut(losses, p.beta * chosen.detach(), p.beta * rejected.detach())


def sigmoid(lp: PairLogps, p: LossParams) -> LossOut:
    """DPO (Rafailov et al. 2023, eq. 7), and conservative DPO with label smoothing eps (Mitchell 2023):

        L = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)        (eps = 0: DPO)
    """
    z = p.beta * (lp.chosen - lp.ref_chosen - lp.rejected + lp.ref_rejected)
    eps = p.label_smoothing
    return _rewards(-(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z), lp, p)


def robust(lp: PairLogps, p: LossParams) -> LossOut:
    """Robust DPO (Chowdhury et al. 2024, eq. 8): unbiased under preference labels flipped with probability eps,

        L = [(1 - eps) (-log sigma(beta h)) - eps (-log sigma(-beta h))] / (1 - 2 eps)
    """
    z = p.beta * (lp.chosen - lp.ref_chosen - lp.rejected + lp.ref_rejected)
    eps = p.label_smoothing
    return _rewards((-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps), lp, p)


def ipo(lp: PairLogps, p: LossParams) -> LossOut:
    """IPO (Azar et al. 2023, eq. 17) with tau = beta, on log-ratios averaged per answer token (as trl, which
    confirmed the normalisation with the authors):

        L = (h_avg - 1 / (2 beta))^2,   h_avg = (pi_c - ref_c) / n_c - (pi_r - ref_r) / n_r
    """
    chosen, rejected = _logratios(lp)
    h = chosen / lp.chosen_tokens.clamp(min=1) - rejected / lp.rejected_tokens.clamp(min=1)
    return _rewards((h - 1 / (2 * p.beta)) ** 2, lp, p)


def hinge(lp: PairLogps, p: LossParams) -> LossOut:
    """SLiC's calibration loss (Zhao et al. 2023) on DPO's log-ratios, with margin 1 / beta:

        L = max(0, 1 - beta h)
    """
    return _rewards(torch.relu(1 - p.beta * (lp.chosen - lp.ref_chosen - lp.rejected + lp.ref_rejected)), lp, p)


def _averages(lp: PairLogps) -> tuple[torch.Tensor, torch.Tensor]:
    return lp.chosen / lp.chosen_tokens.clamp(min=1), lp.rejected / lp.rejected_tokens.clamp(min=1)


def simpo(lp: PairLogps, p: LossParams) -> LossOut:
    """SimPO (Meng et al. 2024, eq. 6): no reference; the reward is the length-normalised log-probability,

        L = -(1 - eps) log sigma(z) - eps log sigma(-z),   z = beta (pi_c / n_c - pi_r / n_r) - gamma
    """
    chosen, rejected = _averages(lp)
    z = p.beta * (chosen - rejected) - p.simpo_gamma
    eps = p.label_smoothing
    losses = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
    return LossOut(losses, p.beta * chosen.detach(), p.beta * rejected.detach())


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -log 2 (Maechler 2012)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def orpo(lp: PairLogps, p: LossParams) -> LossOut:
    """ORPO (Hong et al. 2024, eqs. 4-7): no reference; SFT on the chosen answer plus an odds-ratio term,

        L = -pi_c / n_c  -  lambda log sigma(log odds_c - log odds_r),   log odds = a - log(1 - exp(a)), a = pi / n

    The NLL term is per answer token of the chosen answer (trl's ORPOTrainer also counts the prompt's tokens).
    """
    chosen, rejected = (a.float() for a in _averages(lp))
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    losses = -chosen - p.orpo_lambda * F.logsigmoid(log_odds)
    return LossOut(losses, p.beta * chosen.detach(), p.beta * rejected.detach())


PAIR_LOSSES: dict[str, Callable[[PairLogps, LossParams], LossOut]] = {
    "sigmoid": sigmoid, "robust": robust, "ipo": ipo, "hinge": hinge, "simpo": simpo, "orpo": orpo}
REFERENCE_FREE = frozenset({"simpo", "orpo"})
LOSS_TYPES = (*PAIR_LOSSES, "kto")


def kto_kl(policy_kl: torch.Tensor, ref_kl: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z_ref (Ethayarajh et al. 2024, eq. 7, as trl estimates it): the batch mean of
    log pi(y'|x) - log ref(y'|x) over mismatched pairs (each prompt with another example's answer), clamped at
    0 and detached (no gradient flows through the reference point)."""
    return (policy_kl - ref_kl).mean().detach().clamp(min=0)


def kto(policy: torch.Tensor, ref: torch.Tensor, desirable: torch.Tensor, z_ref: torch.Tensor,
        p: LossParams) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024, eq. 7) on unpaired answers; r = pi - ref (summed log-probabilities):

        desirable:    lambda_D (1 - sigma(beta (r - z_ref)))
        undesirable:  lambda_U (1 - sigma(beta (z_ref - r)))

    Returns the per-example losses [B] and the implicit rewards beta r [B] (detached)."""
    r = policy - ref
    losses = torch.where(desirable, p.desirable_weight * (1 - torch.sigmoid(p.beta * (r - z_ref))),
                         p.undesirable_weight * (1 - torch.sigmoid(p.beta * (z_ref - r))))
    return losses, p.beta * r.detach()
