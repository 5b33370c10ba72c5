"""``lmstack scaling sweep | fit | plan``: run a grid of small models, fit scaling laws to them, plan a budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lmstack.errors import LmstackError
from lmstack.io import read_json, refuse_existing, write_json
from lmstack.scaling.laws import (ComputeLaw, LossLaw, bootstrap, fit_compute_law, fit_loss_law, interval,
                                  select_law)
from lmstack.scaling.plan import plan
from lmstack.scaling.plots import plot_loss_vs_compute, plot_predicted_vs_actual
from lmstack.scaling.presets import PRESETS, preset as published
from lmstack.scaling.runs import PARAM_COUNTS, check_one_tokenizer, read_runs
from lmstack.scaling.sweep import SweepConfig, sweep


def scaling_sweep(cfg: SweepConfig, overwrite: bool = False) -> dict:
    """Train a grid of model sizes x token budgets on one prepared data folder and collect OUT/runs.jsonl.

    Each run is a normal `lmstack train` run in OUT/runs/<name>/ with a cosine schedule decayed over its own
    length; finished runs are skipped, so running the sweep again resumes it.

    Args:
        cfg: the sweep (--config lmstack/configs/scaling_sweep.yaml; --data, --out, --sizes 1x32,2x64,
            --tokens 200000,600000, --head_dim, --train.KEY for every run's other settings)
        overwrite: retrain every run from scratch although OUT holds earlier ones
    """
    return sweep(cfg, overwrite=overwrite)


def _columns(records: list[dict], params: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    key = PARAM_COUNTS[params]
    for r in records:
        if key not in r:
            raise LmstackError(f"{r['where']}: run '{r['name']}' has no '{key}' (needed by --params {params})")
    return (np.array([r[key] for r in records], float), np.array([r["tokens"] for r in records], float),
            np.array([r["val_loss"] for r in records], float))


def scaling_fit(runs: Path, out: Path | None = None, params: Literal["total", "non_embedding"] = "total",
                bootstrap_samples: int = 100, holdout: int = 1, level: float = 0.95, seed: int = 0,
                overwrite: bool = False) -> dict:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, approach 3: Huber loss of log-space
    residuals, BFGS from a grid) and L(C) = a C^b + c to the runs; bootstrap intervals; backtest.

    Writes OUT/fit.json, OUT/loss_vs_compute.png and OUT/predicted_vs_actual.png. The backtest refits without
    the HOLDOUT largest-compute runs and reports how well it predicts them; the law that predicts
    (``predict_with``) is L(C) when L(N, D) is degenerate (an exponent above 1) or did worse in the backtest.

    Args:
        runs: a runs.jsonl from `lmstack scaling sweep` (or with the same fields)
        out: the output folder (default: RUNS's folder/fit)
        params: N as every parameter (total: Hoffmann et al.) or without embeddings (non_embedding: Kaplan et al.)
        bootstrap_samples: resamples of the runs (with replacement) refitted for the confidence intervals
        holdout: the largest-compute runs left out in the backtest
        level: the confidence level of the intervals (percentiles of the bootstrap fits)
        seed: the bootstrap's random seed
        overwrite: replace an earlier fit.json in OUT
    """
    out = Path(out) if out is not None else Path(runs).parent / "fit"
    refuse_existing(out / "fit.json", overwrite)
    if not 0 < level < 1:
        raise LmstackError(f"--level must be in (0, 1), got {level}")
    if bootstrap_samples < 0 or holdout < 0:
        raise LmstackError("--bootstrap-samples and --holdout must be 0 or more")
    records = read_runs(Path(runs))
    sha = check_one_tokenizer(records)
    n, d, loss = _columns(records, params)
    c = 6.0 * n * d
    law, objective = fit_loss_law(n, d, loss)
    compute_law, _ = fit_compute_law(c, loss)
    laws = bootstrap(lambda *cols: fit_loss_law(*cols, starts=0, init=law)[0], [n, d, loss], bootstrap_samples, seed)
    compute_laws = bootstrap(lambda *cols: fit_compute_law(*cols, starts=0, init=compute_law)[0], [c, loss],
                             bootstrap_samples, seed)
    intervals = {k: interval([getattr(b, k) for b in laws], level) for k in ("E", "A", "B", "alpha", "beta")}
    predicted = law.loss(n, d)
    order = np.argsort(c, kind="stable")
    held = np.zeros(len(c), bool)
    held[order[len(c) - holdout:]] = holdout > 0
    backtest = _backtest(n, d, c, loss, held, [r["name"] for r in records])
    predict_with, why = select_law(law, backtest)
    result = {"runs": len(records), "params": params, "tokenizer_sha256": sha, "law": law.to_dict(),
              "objective": objective, "intervals": intervals, "level": level,
              "rmse": float(np.sqrt(np.mean((predicted - loss) ** 2))), "compute_law": compute_law.to_dict(),
              "backtest": backtest, "predict_with": predict_with, "predict_with_reason": why,
              "bootstrap": [b.to_dict() for b in laws], "compute_bootstrap": [b.to_dict() for b in compute_laws]}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "fit.json", result)
    plot_loss_vs_compute(n, c, loss, law, compute_law, out / "loss_vs_compute.png")
    plot_predicted_vs_actual(predicted, loss, held, out / "predicted_vs_actual.png")
    return {"runs": len(records), **{k: v for k, v in law.to_dict().items()},
            **{f"{k}_interval": v for k, v in intervals.items()}, "rmse": result["rmse"],
            "compute_law": compute_law.to_dict(), "backtest": backtest, "predict_with": predict_with,
            "predict_with_reason": why, "fit": str(out / "fit.json")}


def _backtest(n, d, c, loss, held, names) -> dict:
    """Refit on the runs not ``held`` (L(N, D) with >= 5 left, L(C) with >= 3) and predict the held ones."""
    if not held.any():
        return {}
    keep = ~held
    out: dict = {"held_out": [names[i] for i in np.flatnonzero(held)], "actual": loss[held].tolist()}
    if keep.sum() >= 5:
        law, _ = fit_loss_law(n[keep], d[keep], loss[keep])
        pred = law.loss(n[held], d[held])
        out |= {"loss_law_predicted": pred.tolist(), "loss_law_abs_error": np.abs(pred - loss[held]).tolist()}
    if keep.sum() >= 3:
        compute_law, _ = fit_compute_law(c[keep], loss[keep])
        pred = compute_law.loss(c[held])
        out |= {"compute_law_predicted": pred.tolist(), "compute_law_abs_error": np.abs(pred - loss[held]).tolist()}
    return out


@dataclass(frozen=True)
class SavedFit:
    """A fit.json read back: both laws, their bootstrap refits, and which law predicts (``select_law``)."""
    law: LossLaw
    laws: list[LossLaw]
    compute_law: ComputeLaw | None
    compute_laws: list[ComputeLaw]
    predict_with: str  # "loss_law" or "compute_law"
    reason: str = ""

    def predict(self, n: float, d: float, level: float = 0.95) -> tuple[float, tuple[float, float]]:
        """The selected law's loss for N = ``n``, D = ``d`` and its bootstrap ``level`` interval."""
        if self.predict_with == "compute_law" and self.compute_law is not None:
            c = 6.0 * n * d
            return float(self.compute_law.loss(c)), interval([float(b.loss(c)) for b in self.compute_laws], level)
        return float(self.law.loss(n, d)), interval([float(b.loss(n, d)) for b in self.laws], level)


def load_fit(path: Path) -> SavedFit:
    """The laws, their bootstrap refits and the selected law saved in a fit.json."""
    saved = read_json(path)
    try:
        compute = saved.get("compute_law")
        return SavedFit(law=LossLaw(**saved["law"]), laws=[LossLaw(**b) for b in saved.get("bootstrap", [])],
                        compute_law=ComputeLaw(**compute) if compute else None,
                        compute_laws=[ComputeLaw(**b) for b in saved.get("compute_bootstrap", [])],
                        predict_with=saved.get("predict_with", "loss_law"),
                        reason=saved.get("predict_with_reason", ""))
    except (KeyError, TypeError) as e:
        raise LmstackError(f"{path}: not a fit.json of `lmstack scaling fit` ({e})") from None


def scaling_plan(*, flops: float, fit: Path | None = None, preset: str | None = None, level: float = 0.95) -> dict:
    """The compute-optimal model size and token count for a budget of FLOPS (C = 6 N D), tokens per parameter
    and the predicted loss (with its interval when from a fit of your own: its bootstrap fits; by L(C) when the
    fit selected it, L(N, D) then only splitting the budget).

    Args:
        flops: the training compute budget in FLOPs, e.g. 1e21
        fit: a fit.json of `lmstack scaling fit` (losses in your tokenizer's nats per token)
        preset: published constants instead: chinchilla, chinchilla-rounded (Hoffmann et al. 2022), epoch (2024)
        level: the confidence level of the intervals
    """
    if (fit is None) == (preset is None):
        raise LmstackError(f"give one of --fit FIT.json or --preset ({', '.join(PRESETS)})")
    if not 0 < level < 1:
        raise LmstackError(f"--level must be in (0, 1), got {level}")
    saved = load_fit(Path(fit)) if fit is not None else None
    law, laws, source = (saved.law, saved.laws, str(fit)) if saved else (published(preset), [], preset)
    result = plan(law, flops, laws, level)
    if saved is not None and saved.predict_with == "compute_law":  # L(N, D) still splits C; L(C) predicts
        result["loss"], result["loss_interval"] = saved.predict(result["n_opt"], result["d_opt"], level)
        result["predicted_by"] = f"L(C): {saved.reason}"
    if not math.isfinite(result["loss"]):
        raise LmstackError(f"{source}: the law predicts a non-finite loss at {flops:g} FLOPs")
    return {"source": source, **result}
