"""Fitting a probability calibration to labels: temperature or Platt scaling of the logit gap.

Only the fitting lives here; the fitted `curate.calibration.Calibration` is applied by
`Calibration.apply` (`curate.calibration.fake_probability`), the same code the scorer uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from curate.calibration import Calibration, fake_probability
from curate.evaluation.base import EvaluationError, check_arrays, one_class_reason
from curate.evaluation.metrics import expected_calibration_error

CALIBRATION_METHODS = ("temperature", "platt")
# Probabilities are stored as float32: a gap beyond about +-17 rounds to exactly 0 or 1.
_PROB_EPS = 1e-7


def gap_from_prob(p: Any, calibration: Calibration | None = None) -> np.ndarray:
    """The raw logit gap behind stored `fake_prob` values (undoing `calibration` if they were
    scored with one). float32 probabilities saturate, so gaps beyond about +-16 are clipped."""
    p = np.clip(np.asarray(p, dtype=np.float64), _PROB_EPS, 1.0 - _PROB_EPS)
    gap = np.log(p) - np.log1p(-p)
    if calibration is not None:
        gap = (gap - calibration.intercept) / calibration.slope
    return gap


def _nll(z: np.ndarray, t: np.ndarray) -> float:
    # -[t log s(z) + (1-t) log(1-s(z))], written with logaddexp so large |z| stays finite.
    return float(np.mean(t * np.logaddexp(0.0, -z) + (1.0 - t) * np.logaddexp(0.0, z)))


def fit_calibration(
    y: Any, gap: Any, method: str = "temperature", *, model: str | None = None
) -> Calibration:
    """Fit `sigmoid(slope * gap + intercept)` to labels by maximum likelihood.

    `temperature` fits one scale (intercept 0: the ranking and the 0.5 cut stay), `platt` a
    scale and a shift. Targets are Platt's smoothed labels ((N+ + 1)/(N+ + 2) and
    1/(N- + 2)), so a perfectly separated sample gives a finite fit instead of slope -> inf."""
    from scipy.optimize import minimize, minimize_scalar

    y, gap = check_arrays(y, gap)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be 'temperature' or 'platt', got {method!r}")
    reason = one_class_reason(y)
    if reason:
        raise EvaluationError(f"cannot fit a calibration: {reason}")
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    if method == "temperature":
        res = minimize_scalar(
            lambda log_a: _nll(np.exp(log_a) * gap, t), bounds=(-9.0, 9.0), method="bounded"
        )
        return Calibration(slope=float(np.exp(res.x)), intercept=0.0, method=method, model=model)
    scale = float(np.std(gap)) or 1.0

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * gap / scale + ab[1]
        s = fake_probability(z)  # sigmoid, overflow-safe
        g = s - t
        return _nll(z, t), np.array([np.mean(g * gap / scale), np.mean(g)])

    res = minimize(loss, x0=np.array([scale, 0.0]), jac=True, method="L-BFGS-B")
    return Calibration(
        slope=float(res.x[0] / scale), intercept=float(res.x[1]), method=method, model=model
    )


@dataclass
class CalibrationFit:
    """A fitted calibration and how it changes ECE, Brier score and log loss on the images
    held out of the fit (on the fit's own images when nothing was held out)."""

    calibration: Calibration
    n_fit: int
    n_test: int
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    log_loss_before: float
    log_loss_after: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calibration"] = self.calibration.to_dict()
        return d


def calibrate(
    y: Any,
    gap: Any,
    p_before: Any | None = None,
    *,
    method: str = "temperature",
    test_fraction: float = 0.5,
    seed: int = 0,
    model: str | None = None,
    n_bins: int = 15,
) -> CalibrationFit:
    """Fit a calibration on a stratified part of the sample and measure it on the rest.

    `p_before` are the probabilities as they are used now (default `sigmoid(gap)`); ECE, Brier
    score and log loss before/after are measured on the held-out part, which the fit never
    saw. With `test_fraction=0` the fit uses everything and the figures are in-sample."""
    from sklearn.metrics import brier_score_loss, log_loss
    from sklearn.model_selection import train_test_split

    y, gap = check_arrays(y, gap)
    p_before = fake_probability(gap) if p_before is None else np.asarray(p_before, float)
    reason = one_class_reason(y)
    if reason:
        raise EvaluationError(f"cannot fit a calibration: {reason}")
    idx = np.arange(len(y))
    if test_fraction > 0:
        if min(y.sum(), len(y) - y.sum()) < 2:
            raise EvaluationError("a held-out calibration check needs at least 2 Fake and 2 Real")
        fit_idx, test_idx = train_test_split(
            idx, test_size=test_fraction, stratify=y, random_state=seed
        )
    else:
        fit_idx = test_idx = idx
    cal = fit_calibration(y[fit_idx], gap[fit_idx], method, model=model)
    yt, before = y[test_idx], np.clip(p_before[test_idx], _PROB_EPS, 1 - _PROB_EPS)
    after = np.clip(cal.apply(gap[test_idx]), _PROB_EPS, 1 - _PROB_EPS)
    return CalibrationFit(
        calibration=cal,
        n_fit=len(fit_idx),
        n_test=len(test_idx),
        ece_before=expected_calibration_error(yt, before, n_bins),
        ece_after=expected_calibration_error(yt, after, n_bins),
        brier_before=float(brier_score_loss(yt, before)),
        brier_after=float(brier_score_loss(yt, after)),
        log_loss_before=float(log_loss(yt, before, labels=[0, 1])),
        log_loss_after=float(log_loss(yt, after, labels=[0, 1])),
    )
