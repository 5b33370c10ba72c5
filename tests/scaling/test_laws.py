"""The Huber / LSE fit recovers known constants, its gradient is right, bad inputs are refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import check_grad

from lmstack.errors import LmstackError
from lmstack.scaling.laws import (ComputeLaw, LossLaw, bootstrap, fit_compute_law, fit_loss_law, huber, interval,
                                  objective, select_law)
from lmstack.scaling.presets import PRESETS

TRUE = PRESETS["epoch"]


def _grid(noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = np.repeat(np.logspace(7.5, 9.5, 5), 4)
    d = np.tile(np.logspace(9, 11.5, 4), 5)
    return n, d, TRUE.loss(n, d) * np.exp(rng.normal(0, noise, n.size))


def test_huber_by_hand():
    r = np.array([0.0, 5e-4, -1e-3, 3e-3, -1.0])
    np.testing.assert_allclose(huber(r, 1e-3), [0, 1.25e-7, 5e-7, 1e-3 * 2.5e-3, 1e-3 * (1 - 5e-4)])


def test_objective_gradient_matches_finite_differences():
    n, d, loss = _grid(0.01)
    logs, target = np.log(np.vstack([n, d])), np.log(loss)
    theta = np.array([6.0, 7.5, 0.6, 0.3, 0.4])
    f = lambda t: objective(t, logs, target, delta=0.05)  # noqa: E731 - a delta where both branches occur
    assert check_grad(lambda t: f(t)[0], lambda t: f(t)[1], theta) < 1e-6 * max(1.0, np.abs(f(theta)[1]).max())


def test_loss_law_objective_is_lse_of_the_law():
    n, d, loss = _grid(0.0)
    theta = np.log([TRUE.A, TRUE.B, TRUE.E]).tolist() + [TRUE.alpha, TRUE.beta]
    value, _ = objective(np.array(theta), np.log(np.vstack([n, d])), np.log(loss))
    assert value < 1e-20  # the law itself has zero residuals


def test_fit_recovers_the_law_from_noisy_samples():
    n, d, loss = _grid(0.002)
    law, _ = fit_loss_law(n, d, loss, starts=8)
    assert law.alpha == pytest.approx(TRUE.alpha, abs=0.04)
    assert law.beta == pytest.approx(TRUE.beta, abs=0.04)
    assert law.E == pytest.approx(TRUE.E, abs=0.05)
    # extrapolation 100x beyond the largest run stays close to the truth
    assert float(law.loss(3e10, 3e12)) == pytest.approx(float(TRUE.loss(3e10, 3e12)), abs=0.02)


def test_fit_is_exact_without_noise():
    n, d, loss = _grid(0.0)
    law, value = fit_loss_law(n, d, loss, starts=8)
    assert value < 1e-12
    np.testing.assert_allclose(law.loss(n, d), loss, rtol=1e-5)


def test_compute_law_recovers_its_constants():
    true = ComputeLaw(a=40.0, b=-0.12, c=1.2)
    c = np.logspace(12, 16, 9)
    law, _ = fit_compute_law(c, true.loss(c))
    assert law.b == pytest.approx(true.b, rel=0.02)
    assert law.c == pytest.approx(true.c, rel=0.02)
    np.testing.assert_allclose(law.loss(c), true.loss(c), rtol=1e-4)


def test_bootstrap_interval_covers_the_truth():
    n, d, loss = _grid(0.003, seed=1)
    law, _ = fit_loss_law(n, d, loss, starts=8)
    laws = bootstrap(lambda *cols: fit_loss_law(*cols, starts=0, init=law)[0], [n, d, loss], samples=12, seed=0)
    assert len(laws) == 12
    lo, hi = interval([b.alpha for b in laws], 0.99)
    assert lo <= law.alpha <= hi and hi - lo > 0


def test_too_few_runs_and_non_finite_losses_are_refused():
    with pytest.raises(LmstackError, match="5 parameters but only 4 run"):
        fit_loss_law([1e6, 2e6, 3e6, 4e6], [1e8] * 4, [3.0, 2.9, 2.8, 2.7])
    with pytest.raises(LmstackError, match="3 parameters but only 2"):
        fit_compute_law([1e12, 1e13], [3.0, 2.5])
    with pytest.raises(LmstackError, match="loss of point 2 is nan"):
        fit_loss_law([1e6] * 5, [1e8] * 5, [3.0, 2.9, float("nan"), 2.7, 2.6])


def test_law_round_trips_through_its_dict():
    law = LossLaw(**TRUE.to_dict())
    assert law == TRUE


def test_select_law_prefers_l_of_c_when_l_n_d_is_degenerate_or_backtests_worse():
    plausible = LossLaw(E=1.5, A=300.0, B=900.0, alpha=0.4, beta=0.35)
    assert select_law(plausible, {})[0] == "loss_law"
    assert select_law(plausible, {"loss_law_abs_error": [0.01], "compute_law_abs_error": [0.02]})[0] == "loss_law"
    worse = {"loss_law_abs_error": [0.05, 0.07], "compute_law_abs_error": [0.01, 0.02]}
    which, why = select_law(plausible, worse)
    assert which == "compute_law" and "0.0150 against 0.0600" in why
    which, why = select_law(LossLaw(E=0.76, A=1.0, B=1.0, alpha=2.02, beta=2.12), {})
    assert which == "compute_law" and "degenerate" in why


def test_a_start_whose_constant_underflowed_to_zero_still_refits():
    """A fit may give E = exp(e) == 0.0 (e below -745); the bootstrap starts from it, so it must not crash."""
    n, d, loss = _grid(0.001)
    law, _ = fit_loss_law(n, d, loss, starts=0, init=LossLaw(E=0.0, A=TRUE.A, B=TRUE.B, alpha=TRUE.alpha,
                                                             beta=TRUE.beta))
    assert np.all(np.isfinite(law.loss(n, d)))
    fit_compute_law(6 * n * d, loss, starts=0, init=ComputeLaw(a=1.0, b=-0.1, c=0.0))
