"""Scaling laws fitted as Hoffmann et al. (2022, approach 3) and Besiroglu et al. (2024) fit them.

Both laws are a log-sum-exp of terms linear in their parameters, fitted by minimising the Huber loss
(delta = 1e-3) of log-space residuals with BFGS from a grid of initialisations:
- ``LossLaw``: L(N, D) = E + A / N^alpha + B / D^beta, log L = LSE(a - alpha log N, b - beta log D, e) with
  A = e^a, B = e^b, E = e^e. Grid (Hoffmann et al. D.2): alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
  a, b in {0, 5, ..., 25} (4,500 points).
- ``ComputeLaw``: L(C) = a C^b + c (b < 0), log L = LSE(log a + b log C, log c).

The objective is the Huber loss *summed* over runs (Besiroglu et al. show that Hoffmann's mean, with the
optimiser's default tolerance, stops before convergence). Every grid point's objective is computed at once; BFGS
(the full-memory form of the paper's L-BFGS: scipy's L-BFGS-B is ~15x slower per step on 5 parameters) runs from
the ``starts`` best of them (default 64; None: from every point, as the paper), coarsely, and the two best end
points are polished with a tight gradient tolerance (1e-11). A bootstrap refit starts from the full fit alone.
Features are centred while optimising (c - s log x = (c - s mu) - s (log x - mu)), which conditions the problem.
End points with an exponent outside [0, 10] are discarded (a law whose loss grows with scale is no scaling law).
Confidence intervals come from the bootstrap: resample runs with replacement, refit, take percentiles.
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import asdict, dataclass

import numpy as np

from lmstack.errors import LmstackError

HUBER_DELTA = 1e-3
MAX_EXPONENT = 10.0
CHINCHILLA_GRID = {"a": np.arange(0, 26, 5.0), "b": np.arange(0, 26, 5.0), "e": np.arange(-1, 1.01, 0.5),
                   "alpha": np.arange(0, 2.01, 0.5), "beta": np.arange(0, 2.01, 0.5)}
COMPUTE_GRID = {"a": np.arange(0, 21, 2.0), "e": np.arange(-1, 1.01, 0.5),
                "g": np.array([0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0])}


@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2)."""
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n, d):
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.E + self.A / n ** self.alpha + self.B / d ** self.beta

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> LossLaw:
        a, b, e, alpha, beta = map(float, theta)
        return cls(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ComputeLaw:
    """L(C) = a C^b + c, b < 0: loss against training compute alone (Kaplan et al. 2020 with an offset)."""
    a: float
    b: float
    c: float

    def loss(self, c):
        return self.a * np.asarray(c, dtype=float) ** self.b + self.c

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> ComputeLaw:
        log_a, e, g = map(float, theta)
        return cls(a=math.exp(log_a), b=-g, c=math.exp(e))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    """Huber's loss: r^2 / 2 within delta, delta (|r| - delta / 2) beyond."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _terms(theta: np.ndarray, logs: np.ndarray) -> np.ndarray:
    """The LSE's terms for parameters ``theta`` (... x (2m+1): m intercepts, e, m slopes) at features ``logs``
    (m x n): intercept_k - slope_k log x_k for each power term, then e: shape ... x (m+1) x n."""
    m = logs.shape[0]
    c, e, s = theta[..., :m], theta[..., m:m + 1], theta[..., m + 1:]
    power = c[..., :, None] - s[..., :, None] * logs
    return np.concatenate([power, np.broadcast_to(e[..., :, None], e.shape + (logs.shape[1],))], axis=-2)


def objective(theta: np.ndarray, logs: np.ndarray, log_loss: np.ndarray, delta: float = HUBER_DELTA
              ) -> tuple[float, np.ndarray]:
    """sum_i Huber_delta(LSE(terms_i) - log L_i) and its gradient in ``theta``."""
    t = _terms(theta, logs)
    top = t.max(axis=0)
    w = np.exp(t - top)
    z = w.sum(axis=0)
    r = top + np.log(z) - log_loss
    w /= z  # softmax weights: d LSE / d term
    dh = np.clip(r, -delta, delta)
    m = logs.shape[0]
    grad = np.empty_like(theta)
    grad[:m] = (dh * w[:m]).sum(axis=1)
    grad[m] = (dh * w[m]).sum()
    grad[m + 1:] = -(dh * w[:m] * logs).sum(axis=1)
    return float(huber(r, delta).sum()), grad


def _grid_objectives(grid: np.ndarray, logs: np.ndarray, log_loss: np.ndarray, delta: float) -> np.ndarray:
    t = _terms(grid, logs)  # k x (m+1) x n
    top = t.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(t - top).sum(axis=1, keepdims=True)))[:, 0]
    return huber(lse - log_loss, delta).sum(axis=1)


def fit_lse(logs: np.ndarray, log_loss: np.ndarray, grid: np.ndarray, starts: int | None = 64,
            delta: float = HUBER_DELTA, extra_starts: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Minimise ``objective`` with BFGS from the ``starts`` best grid points (None: all) plus ``extra_starts``;
    returns the best parameters and their objective."""
    from scipy.optimize import minimize

    scores = _grid_objectives(grid, logs, log_loss, delta)
    order = np.argsort(scores, kind="stable")
    chosen = grid[order if starts is None else order[:starts]]
    if extra_starts is not None:
        chosen = np.vstack([np.atleast_2d(extra_starts), chosen])
    m = logs.shape[0]
    # Optimise with centred features (c - s log x = (c - s mu) - s (log x - mu)): the same minimum, far better
    # conditioned (log N ~ 20 couples a and alpha tightly), so BFGS needs a fraction of the steps.
    mu = logs.mean(axis=1)
    centred = logs - mu[:, None]
    chosen = chosen.copy()
    chosen[:, :m] -= chosen[:, m + 1:] * mu
    # BFGS (scipy's L-BFGS-B takes ~15x longer per step on these few-parameter problems, to the same minimum)
    # from every start with a coarse gradient tolerance, then the two best polished with a tight one (1e-11:
    # the summed Huber values are ~1e-6, so a default tolerance stops early, as Besiroglu et al. found).
    def run(x0, gtol):
        return minimize(objective, x0, args=(centred, log_loss, delta), jac=True, method="BFGS",
                        options={"gtol": gtol, "maxiter": 2000})

    def usable(r) -> bool:  # finite, exponents within [0, MAX_EXPONENT]
        return bool(np.all(np.isfinite(r.x)) and np.all((r.x[m + 1:] >= 0) & (r.x[m + 1:] <= MAX_EXPONENT)))

    coarse = sorted((r for r in (run(x0, 1e-6) for x0 in chosen) if usable(r)), key=lambda r: r.fun)
    best, best_value = None, math.inf
    for r in coarse[:2]:
        res = run(r.x, 1e-11)
        res = res if usable(res) and res.fun <= r.fun else r
        if res.fun < best_value:
            best, best_value = res.x, float(res.fun)
    if best is None:  # also: starts=0 and no extra start
        raise LmstackError("the scaling-law fit did not converge from any initialisation")
    best = best.copy()
    best[:m] += best[m + 1:] * mu
    return best, best_value


def _log(x: float) -> float:
    """log x of a fitted constant, which exp() may have underflowed to 0 (log of the least normal double then)."""
    return math.log(max(x, sys.float_info.min))


def _grid(spec: dict[str, np.ndarray], order: tuple[str, ...]) -> np.ndarray:
    return np.array(list(itertools.product(*(spec[k] for k in order))), dtype=float)


def _check(values: dict[str, np.ndarray], need: int, law: str) -> None:
    lengths = {len(v) for v in values.values()}
    if len(lengths) != 1:
        raise LmstackError(f"{law}: the inputs have different lengths {sorted(lengths)}")
    n = lengths.pop()
    if n < need:
        raise LmstackError(f"{law} has {need} parameters but only {n} run(s) were given: fit at least {need}")
    for name, v in values.items():
        bad = np.flatnonzero(~np.isfinite(v) | (v <= 0))
        if bad.size:
            raise LmstackError(f"{law}: {name} of point {int(bad[0])} is {float(v[bad[0]])}; "
                               "expected a finite number > 0")


def fit_loss_law(n, d, loss, starts: int | None = 64, delta: float = HUBER_DELTA,
                 init: LossLaw | None = None) -> tuple[LossLaw, float]:
    """Fit L(N, D) (approach 3 of Hoffmann et al.) to parameters ``n``, tokens ``d`` and losses ``loss``;
    returns the law and the summed Huber objective. ``init`` adds a start (the bootstrap starts at the fit)."""
    values = {"N": np.asarray(n, float), "D": np.asarray(d, float), "loss": np.asarray(loss, float)}
    _check(values, 5, "L(N, D) = E + A/N^alpha + B/D^beta")
    logs = np.log(np.vstack([values["N"], values["D"]]))
    extra = None if init is None else np.array([_log(init.A), _log(init.B), _log(init.E),
                                                init.alpha, init.beta])
    grid = _grid(CHINCHILLA_GRID, ("a", "b", "e", "alpha", "beta"))
    theta, value = fit_lse(logs, np.log(values["loss"]), grid, starts, delta, extra)
    return LossLaw.from_theta(theta), value


def fit_compute_law(c, loss, starts: int | None = 64, delta: float = HUBER_DELTA,
                    init: ComputeLaw | None = None) -> tuple[ComputeLaw, float]:
    """Fit L(C) = a C^b + c by the same Huber / LSE method; returns the law and its objective."""
    values = {"C": np.asarray(c, float), "loss": np.asarray(loss, float)}
    _check(values, 3, "L(C) = a C^b + c")
    extra = None if init is None else np.array([_log(init.a), _log(init.c), -init.b])
    theta, value = fit_lse(np.log(values["C"])[None, :], np.log(values["loss"]), _grid(COMPUTE_GRID, ("a", "e", "g")),
                           starts, delta, extra)
    return ComputeLaw.from_theta(theta), value


def bootstrap(fit, columns: list[np.ndarray], samples: int = 200, seed: int = 0) -> list:
    """Refit ``fit(*resampled_columns)`` on ``samples`` resamples of the runs (with replacement, numpy's
    ``default_rng(seed)``); resamples the law cannot be fitted on (too few distinct runs) are skipped."""
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    laws = []
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        try:
            laws.append(fit(*(np.asarray(col)[idx] for col in columns)))
        except LmstackError:
            continue
    return laws


def interval(values, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of ``values`` (NaN, NaN when empty)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


# Published L(N, D) exponents lie between 0.07 (Kaplan et al. 2020) and about 0.4 (Hoffmann et al. 2022: 0.34 /
# 0.28; Besiroglu et al. 2024: 0.35 / 0.37). A fit with an exponent above 1 says loss falls faster than 1/N or
# 1/D: the grid did not separate N from D (too few budgets, runs still in the early drop, repeated data).
PLAUSIBLE_EXPONENT = 1.0


def select_law(law: LossLaw, backtest: dict) -> tuple[str, str]:
    """Which fitted law predicts: ``"loss_law"`` (L(N, D)) or ``"compute_law"`` (L(C)), and why.

    L(C) when L(N, D) is degenerate (an exponent above ``PLAUSIBLE_EXPONENT``) or when it predicted the
    backtest's held-out largest runs worse than L(C) did (mean absolute error); else L(N, D)."""
    if max(law.alpha, law.beta) > PLAUSIBLE_EXPONENT:
        return "compute_law", (f"L(N, D) is degenerate (alpha={law.alpha:.3g}, beta={law.beta:.3g}; published fits "
                               f"have exponents <= {PLAUSIBLE_EXPONENT:g})")
    nd, c = backtest.get("loss_law_abs_error"), backtest.get("compute_law_abs_error")
    if nd and c and float(np.mean(c)) < float(np.mean(nd)):
        return "compute_law", (f"L(C) predicted the held-out runs better in the backtest (mean |error| "
                               f"{np.mean(c):.4f} against {np.mean(nd):.4f})")
    return "loss_law", "L(N, D) is plausible and no worse than L(C) in the backtest"
