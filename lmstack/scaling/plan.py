"""Compute-optimal allocation under L(N, D) = E + A/N^alpha + B/D^beta with C = 6 N D (Hoffmann et al. 2022,
eq. 4): N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = G^-1 (C/6)^(alpha/(alpha+beta)) = C / (6 N_opt),
G = (alpha A / (beta B))^(1/(alpha+beta)). E does not move the optimum, only the predicted loss."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lmstack.errors import LmstackError
from lmstack.scaling.laws import LossLaw, interval


def compute_optimal(law: LossLaw, flops: float) -> tuple[float, float]:
    """(N_opt, D_opt) minimising ``law`` subject to 6 N D = ``flops``."""
    if not (isinstance(flops, (int, float)) and math.isfinite(flops) and flops > 0):
        raise LmstackError(f"--flops must be a finite number > 0, got {flops!r}")
    if law.alpha <= 0 or law.beta <= 0:
        raise LmstackError(f"the law's exponents must be > 0 for an optimum (alpha={law.alpha:.4g}, "
                           f"beta={law.beta:.4g})")
    s = law.alpha + law.beta
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / s)
    n = g * (flops / 6.0) ** (law.beta / s)
    return n, flops / (6.0 * n)


def plan(law: LossLaw, flops: float, bootstrap_laws: Sequence[LossLaw] = (), level: float = 0.95) -> dict:
    """N_opt, D_opt, tokens per parameter and the predicted loss at ``flops``; with ``bootstrap_laws`` also
    their ``level`` percentile intervals (each resample's own optimum, and the loss each predicts at the plan)."""
    n, d = compute_optimal(law, flops)
    out = {"flops": float(flops), "n_opt": n, "d_opt": d, "tokens_per_param": d / n,
           "loss": float(law.loss(n, d))}
    usable = [b for b in bootstrap_laws if b.alpha > 0 and b.beta > 0]
    if usable:
        opt = np.array([compute_optimal(b, flops) for b in usable])
        out["n_opt_interval"] = interval(opt[:, 0], level)
        out["d_opt_interval"] = interval(opt[:, 1], level)
        out["loss_interval"] = interval([float(b.loss(n, d)) for b in usable], level)
        out["level"] = level
    return out
