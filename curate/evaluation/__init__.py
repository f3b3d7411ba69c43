"""Decision quality on a user's own labelled sample: metrics, calibration, thresholds, robustness.

Everything here works on two arrays: `y` (1 = Fake, 0 = Real, the class a curator removes is
the positive one) and `p` (the scorer's `fake_prob`), plus the logit gap
`fake_logit - real_logit` where a calibration is fitted. Metrics come from scikit-learn; the
card-style table is `sklearn.metrics.classification_report` in the model card's layout.

Decisions follow `curate.filtering.DecisionRule`: an image is removed when `fake_prob` is at or
above the threshold. Chosen thresholds and band edges sit halfway between two observed scores,
so the choice does not depend on how ties at the cut are broken and carries over to new data.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from curate.calibration import Calibration

FAKE, REAL = "Fake", "Real"
FAKE_NAMES = frozenset({"fake", "synthetic", "generated", "ai", "ai-generated", "ai_generated"})
REAL_NAMES = frozenset({"real", "authentic", "genuine", "natural"})
DEFAULT_PERTURBATIONS = ("jpeg:90", "jpeg:75", "jpeg:50", "downscale:0.5", "downscale:0.25")
CANDIDATE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
# Probabilities are stored as float32: a gap beyond about +-17 rounds to exactly 0 or 1.
_PROB_EPS = 1e-7


class EvaluationError(ValueError):
    """The labelled sample cannot answer the question asked; the message says why."""


# -- labels ---------------------------------------------------------------------------------------
def parse_label_map(spec: str | Mapping[str, str] | Iterable[str] | None) -> dict[str, str] | None:
    """`"ai=Fake,photo=Real"` (or a list of `value=Fake|Real` items, or a dict) -> {value: class}."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        parts = (
            spec.split(",") if isinstance(spec, str) else [s for x in spec for s in x.split(",")]
        )
        items = []
        for part in (p.strip() for p in parts):
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"label map item {part!r} is not of the form VALUE=Fake|Real")
            key, _, value = part.rpartition("=")
            items.append((key.strip(), value.strip()))
    out: dict[str, str] = {}
    for key, value in items:
        cls = _class_name(value)
        if cls is None:
            raise ValueError(f"label map sends {key!r} to {value!r}; it must be Fake or Real")
        out[str(key)] = cls
    if not out:
        raise ValueError("empty label map")
    return out


def _class_name(value: Any) -> str | None:
    name = str(value).strip().lower()
    if name in FAKE_NAMES:
        return FAKE
    if name in REAL_NAMES:
        return REAL
    return None


def encode_labels(
    values: Sequence[Any], label_map: Mapping[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth values -> (`y`: 1 Fake / 0 Real, `labelled`: mask of rows with a label).

    Values are matched by name (Fake/Real and a few synonyms, any case) or through
    `label_map` (keys compared as strings, so `{"0": "Fake"}` matches the integer 0). Null
    labels are left out; any other value neither names nor the map know is an error: numbers
    and booleans always need a map, since 0 means Fake on the model card and Real elsewhere."""
    y = np.zeros(len(values), dtype=np.int8)
    labelled = np.zeros(len(values), dtype=bool)
    unknown: dict[str, int] = {}
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
            continue
        if label_map is not None:
            cls = label_map.get(str(v))
        elif isinstance(v, (bool, int, float, np.number, np.bool_)):
            cls = None
        else:
            cls = _class_name(v)
        if cls is None:
            unknown[str(v)] = unknown.get(str(v), 0) + 1
            continue
        y[i] = cls == FAKE
        labelled[i] = True
    if unknown:
        shown = ", ".join(f"{k!r} ({n})" for k, n in sorted(unknown.items())[:6])
        hint = (
            "; numeric and boolean labels need an explicit map, e.g. --label-map 1=Fake,0=Real"
            if label_map is None
            else f"; the label map knows {sorted(label_map)}"
        )
        raise EvaluationError(f"labels that are neither Fake nor Real: {shown}{hint}")
    return y, labelled


# -- metrics --------------------------------------------------------------------------------------
def _as_arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int8).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} scores")
    if len(y) == 0:
        raise EvaluationError("no labelled, scored images to evaluate")
    if not np.isfinite(p).all():
        raise ValueError("scores contain NaN or infinity; drop unscored rows first")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 1 (Fake) or 0 (Real)")
    return y, p


def removed(p: Any, threshold: float) -> np.ndarray:
    """The images a threshold removes: `fake_prob >= threshold` (as `DecisionRule`)."""
    return np.asarray(p, dtype=np.float64) >= threshold


def _both_classes(y: np.ndarray) -> str | None:
    n_fake = int(y.sum())
    if n_fake == 0:
        return f"the sample has only Real images ({len(y)}): ROC-AUC, AP and TPR need Fake ones too"
    if n_fake == len(y):
        return f"the sample has only Fake images ({len(y)}): ROC-AUC, AP and FPR need Real ones too"
    return None


def roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for the rule `p >= threshold`, every distinct score kept."""
    from sklearn.metrics import roc_curve

    return roc_curve(y, p, drop_intermediate=False)


def tpr_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float) -> float:
    """Highest share of Fakes removed by a threshold that removes at most `max_fpr` of Reals."""
    fpr, tpr, _ = roc_points(y, p)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width bin of `fake_prob`: count, mean score, share of Fakes (as
    `sklearn.calibration.calibration_curve(strategy="uniform")` bins them)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / np.maximum(count, 1), 0.0)
        frac = np.where(count > 0, sum_y / np.maximum(count, 1), 0.0)
    return {"edges": edges, "count": count, "mean_prob": mean_p, "fake_fraction": frac}


def expected_calibration_error(y: Any, p: Any, n_bins: int = 15) -> float:
    """ECE of `fake_prob`: the count-weighted mean |share of Fakes - mean score| over bins."""
    y, p = _as_arrays(y, p)
    b = reliability_bins(y, p, n_bins)
    return float(np.sum(b["count"] * np.abs(b["fake_fraction"] - b["mean_prob"])) / len(y))


@dataclass
class Metrics:
    n: int
    n_fake: int
    n_real: int
    threshold: float
    accuracy: float
    fake_precision: float
    fake_recall: float
    real_removed: float | None  # FPR at the threshold: share of Real images removed
    roc_auc: float | None
    average_precision: float | None
    tpr_at_1pct_fpr: float | None
    tpr_at_5pct_fpr: float | None
    ece: float
    brier: float
    confusion: list[list[int]]  # rows: true Fake, Real; columns: predicted Fake, Real
    report: str  # the card-style table
    report_dict: dict[str, Any] = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(y: Any, p: Any, threshold: float = 0.5, n_bins: int = 15) -> Metrics:
    """All headline figures for `fake_prob` scores against 1 = Fake / 0 = Real labels.

    Figures a one-class sample cannot define (ROC-AUC, AP, TPR at FPR) are None with a note
    saying why; nothing is NaN."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        classification_report,
        confusion_matrix,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y, p = _as_arrays(y, p)
    pred = removed(p, threshold).astype(np.int8)
    notes: list[str] = []
    one_class = _both_classes(y)
    if one_class:
        notes.append(one_class)
    if pred.sum() == 0:
        notes.append(f"no image is at or above the threshold {threshold:g}: Fake precision is 0")
    common = dict(labels=[1, 0], zero_division=0)
    report = classification_report(y, pred, target_names=[FAKE, REAL], digits=4, **common)
    report_dict = classification_report(
        y, pred, target_names=[FAKE, REAL], output_dict=True, **common
    )
    n_fake = int(y.sum())
    n_real = len(y) - n_fake
    auc = ap = t1 = t5 = None
    if not one_class:
        auc = float(roc_auc_score(y, p))
        ap = float(average_precision_score(y, p))
        t1 = tpr_at_fpr(y, p, 0.01)
        t5 = tpr_at_fpr(y, p, 0.05)
    return Metrics(
        n=len(y),
        n_fake=n_fake,
        n_real=n_real,
        threshold=float(threshold),
        accuracy=float(accuracy_score(y, pred)),
        fake_precision=float(precision_score(y, pred, pos_label=1, zero_division=0)),
        fake_recall=float(recall_score(y, pred, pos_label=1, zero_division=0)) if n_fake else 0.0,
        real_removed=float(pred[y == 0].mean()) if n_real else None,
        roc_auc=auc,
        average_precision=ap,
        tpr_at_1pct_fpr=t1,
        tpr_at_5pct_fpr=t5,
        ece=expected_calibration_error(y, p, n_bins),
        brier=float(brier_score_loss(y, p, pos_label=1)),
        confusion=confusion_matrix(y, pred, labels=[1, 0]).tolist(),
        report=report,
        report_dict=report_dict,
        notes=notes,
    )


BOOTSTRAP_METRICS = (
    "accuracy",
    "roc_auc",
    "average_precision",
    "tpr_at_1pct_fpr",
    "tpr_at_5pct_fpr",
    "ece",
    "brier",
)


def bootstrap_ci(
    y: Any,
    p: Any,
    threshold: float = 0.5,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    n_bins: int = 15,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the headline figures.

    Resampling is stratified (Fakes and Reals resampled separately), so every resample keeps
    the sample's class counts: the interval reflects which images were drawn, not how many of
    each class. Figures a one-class sample cannot define are left out."""
    from sklearn.metrics import auc, average_precision_score

    y, p = _as_arrays(y, p)
    if n_boot < 1:
        return {}
    rng = np.random.default_rng(seed)
    fake_idx, real_idx = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    two = len(fake_idx) > 0 and len(real_idx) > 0
    names = BOOTSTRAP_METRICS if two else ("accuracy", "ece", "brier")
    draws = {k: np.empty(n_boot) for k in names}
    for b in range(n_boot):
        idx = np.concatenate(
            [
                rng.choice(fake_idx, len(fake_idx)) if len(fake_idx) else fake_idx,
                rng.choice(real_idx, len(real_idx)) if len(real_idx) else real_idx,
            ]
        )
        yb, pb = y[idx], p[idx]
        draws["accuracy"][b] = np.mean(removed(pb, threshold) == yb.astype(bool))
        draws["ece"][b] = expected_calibration_error(yb, pb, n_bins)
        draws["brier"][b] = np.mean((pb - yb) ** 2)
        if two:
            fpr, tpr, _ = roc_points(yb, pb)
            draws["roc_auc"][b] = auc(fpr, tpr)
            draws["tpr_at_1pct_fpr"][b] = tpr[fpr <= 0.01 + 1e-12].max()
            draws["tpr_at_5pct_fpr"][b] = tpr[fpr <= 0.05 + 1e-12].max()
            draws["average_precision"][b] = average_precision_score(yb, pb)
    alpha = (1.0 - confidence) / 2.0
    return {
        k: (float(np.quantile(v, alpha)), float(np.quantile(v, 1.0 - alpha)))
        for k, v in draws.items()
    }


def threshold_ci(
    y: Any,
    p: Any,
    threshold: float,
    *,
    prevalence: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Stratified-bootstrap intervals of a threshold's recall, FPR and precision (at
    `prevalence`). With class counts fixed, a resample's removed Fakes are exactly
    Binomial(n_fake, recall), so the resamples are drawn directly."""
    y, p = _as_arrays(y, p)
    n_fake = int(y.sum())
    n_real = len(y) - n_fake
    if n_boot < 1 or not n_fake or not n_real:
        return {}
    r = removed(p, threshold)
    rng = np.random.default_rng(seed)
    tpr = rng.binomial(n_fake, r[y == 1].mean(), n_boot) / n_fake
    fpr = rng.binomial(n_real, r[y == 0].mean(), n_boot) / n_real
    prev = n_fake / len(y) if prevalence is None else float(prevalence)
    denom = prev * tpr + (1 - prev) * fpr
    prec = np.divide(prev * tpr, denom, out=np.zeros_like(denom), where=denom > 0)
    alpha = (1.0 - confidence) / 2.0
    q = lambda v: (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha)))  # noqa: E731
    out = {"recall": q(tpr), "fpr": q(fpr)}
    if (denom > 0).all():
        out["precision"] = q(prec)
    return out


# -- calibration ----------------------------------------------------------------------------------
def gap_from_prob(p: Any, calibration: Calibration | None = None) -> np.ndarray:
    """The raw logit gap behind stored `fake_prob` values (undoing `calibration` if they were
    scored with one). float32 probabilities saturate, so gaps beyond about +-16 are clipped."""
    p = np.clip(np.asarray(p, dtype=np.float64), _PROB_EPS, 1.0 - _PROB_EPS)
    gap = np.log(p) - np.log1p(-p)
    if calibration is not None:
        gap = (gap - calibration.intercept) / calibration.slope
    return gap


def apply_calibration(calibration: Calibration | None, gap: Any) -> np.ndarray:
    """Calibrated `fake_prob` for raw logit gaps, exactly as `DeepfakeScorer` computes it."""
    from scipy.special import expit

    gap = np.asarray(gap, dtype=np.float64)
    if calibration is not None:
        gap = calibration.slope * gap + calibration.intercept
    return expit(gap)


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

    y, gap = _as_arrays(y, gap)
    if method not in ("temperature", "platt"):
        raise ValueError(f"calibration method must be 'temperature' or 'platt', got {method!r}")
    reason = _both_classes(y)
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
        s = 1.0 / (1.0 + np.exp(-z))
        g = s - t
        return _nll(z, t), np.array([np.mean(g * gap / scale), np.mean(g)])

    res = minimize(loss, x0=np.array([scale, 0.0]), jac=True, method="L-BFGS-B")
    return Calibration(
        slope=float(res.x[0] / scale), intercept=float(res.x[1]), method=method, model=model
    )


@dataclass
class CalibrationFit:
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

    y, gap = _as_arrays(y, gap)
    p_before = apply_calibration(None, gap) if p_before is None else np.asarray(p_before, float)
    reason = _both_classes(y)
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
    after = np.clip(apply_calibration(cal, gap[test_idx]), _PROB_EPS, 1 - _PROB_EPS)
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


# -- thresholds -----------------------------------------------------------------------------------
def _clopper_pearson(k: np.ndarray, n: np.ndarray, confidence: float, upper: bool) -> np.ndarray:
    from scipy.stats import beta

    k, n = np.asarray(k, float), np.asarray(n, float)
    a = 1.0 - confidence
    with np.errstate(invalid="ignore"):
        if upper:
            b = beta.ppf(1 - a, k + 1, n - k)
            return np.where(k >= n, 1.0, b)
        b = beta.ppf(a, k, n - k + 1)
        return np.where(k <= 0, 0.0, b)


@dataclass
class Expected:
    """What a decision does to the user's data: expected counts out of `dataset_size` images of
    which a share `prevalence` is Fake."""

    dataset_size: int
    prevalence: float
    kept: float
    removed: float
    review: float
    real_removed: float  # Real images removed by mistake
    fake_kept: float  # Fake images left in the kept set


def _expected(
    tpr: float, fpr: float, n: int, prev: float, review_tpr: float = 0.0, review_fpr: float = 0.0
) -> Expected:
    removed_ = n * (prev * tpr + (1 - prev) * fpr)
    review = n * (prev * review_tpr + (1 - prev) * review_fpr)
    return Expected(
        dataset_size=n,
        prevalence=prev,
        kept=n - removed_ - review,
        removed=removed_,
        review=review,
        real_removed=n * (1 - prev) * fpr,
        fake_kept=n * prev * (1 - tpr - review_tpr),
    )


@dataclass
class ThresholdChoice:
    criterion: str  # "precision", "recall", "max_fpr" or "fixed"
    target: float | None
    threshold: float | None  # None when no threshold reaches the target
    precision: float | None  # of the removed set, at the data's prevalence
    recall: float  # share of Fakes removed (TPR)
    fpr: float  # share of Reals removed
    expected: Expected | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cuts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct cut, highest first: (threshold, removed Fakes, removed Reals) for the rule
    `p >= threshold`. Cut 0 removes nothing; cut k removes the k highest distinct scores, its
    threshold halfway between the k-th and the (k+1)-th."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), len(ps) - 1]  # end of each tie group
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    vals = ps[last]
    lower = np.r_[vals[1:], 0.0]
    thr = (vals + lower) / 2.0
    top = (vals[0] + 1.0) / 2.0 if vals[0] < 1.0 else math.nextafter(1.0, math.inf)
    return np.r_[top, thr], np.r_[0, tp], np.r_[0, fp]


def choose_threshold(
    y: Any,
    p: Any,
    *,
    precision: float | None = None,
    recall: float | None = None,
    max_fpr: float | None = None,
    prevalence: float | None = None,
    dataset_size: int | None = None,
    confidence: float | None = None,
) -> ThresholdChoice:
    """The threshold (remove when `fake_prob >= threshold`) that meets one target:

    - `precision`: at least this share of the removed images are Fake (the lowest such
      threshold, so the most Fakes go), e.g. 0.99 = "at most 1 % of what is removed is Real";
    - `recall`: at least this share of Fakes is removed (the highest such threshold);
    - `max_fpr`: at most this share of Real images is removed (the lowest such threshold).

    Precision depends on how many Fakes the data holds: `prevalence` (default: the sample's
    share of Fakes) re-weights it for data whose mix differs from the labelled sample. With
    `confidence` (e.g. 0.95) the rates are replaced by one-sided Clopper-Pearson bounds (recall
    low, FPR high), so the target holds with that confidence rather than on average.
    Expected counts are for `dataset_size` images (default: the sample size)."""
    y, p = _as_arrays(y, p)
    given = [
        (k, v)
        for k, v in (("precision", precision), ("recall", recall), ("max_fpr", max_fpr))
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError("give exactly one of precision, recall, max_fpr")
    criterion, target = given[0]
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"{criterion} target must be in [0, 1], got {target}")
    n_fake = int(y.sum())
    n_real = len(y) - n_fake
    if criterion in ("precision", "recall") and n_fake == 0:
        raise EvaluationError(f"a {criterion} target needs Fake images in the labelled sample")
    if criterion in ("precision", "max_fpr") and n_real == 0:
        raise EvaluationError(f"a {criterion} target needs Real images in the labelled sample")
    prev = n_fake / len(y) if prevalence is None else float(prevalence)
    if not 0.0 <= prev <= 1.0:
        raise ValueError(f"prevalence must be in [0, 1], got {prevalence}")
    n = len(y) if dataset_size is None else int(dataset_size)
    thr, tp, fp = _cuts(y, p)
    tpr = tp / max(n_fake, 1)
    fpr = fp / max(n_real, 1)
    tpr_b, fpr_b = tpr, fpr
    if confidence is not None:
        tpr_b = _clopper_pearson(tp, n_fake, confidence, upper=False) if n_fake else tpr
        fpr_b = _clopper_pearson(fp, n_real, confidence, upper=True) if n_real else fpr
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = prev * tpr_b / (prev * tpr_b + (1 - prev) * fpr_b)
    prec = np.where(np.isfinite(prec), prec, np.nan)
    if criterion == "precision":
        ok = np.flatnonzero(prec >= target)
        ok = ok[ok > 0]  # "remove nothing" has no precision
        i = int(ok.max()) if len(ok) else None
    elif criterion == "recall":
        ok = np.flatnonzero(tpr_b >= target)
        i = int(ok.min()) if len(ok) else None
    else:
        ok = np.flatnonzero(fpr_b <= target)
        i = int(ok.max()) if len(ok) else None
    if i is None:
        best = np.nanmax(prec[1:]) if criterion == "precision" else None
        note = f"no threshold reaches {criterion} {target:g} on this sample"
        if best is not None:
            note += f" (best precision {best:.4f})"
        return ThresholdChoice(criterion, target, None, None, 0.0, 0.0, None, note)
    if thr[i] > 1.0:
        note = f"only removing nothing meets {criterion} {target:g} (some Real images score 1.0)"
        return ThresholdChoice(criterion, target, None, None, 0.0, 0.0, None, note)
    note = ""
    if criterion != "recall" and i == len(thr) - 1:
        note = "the target allows removing everything: the sample cannot separate the classes"
    return ThresholdChoice(
        criterion=criterion,
        target=target,
        threshold=float(thr[i]),
        precision=None if not np.isfinite(prec[i]) else float(prec[i]),
        recall=float(tpr[i]),
        fpr=float(fpr[i]),
        expected=_expected(float(tpr[i]), float(fpr[i]), n, prev),
        note=note,
    )


def threshold_summary(
    y: Any,
    p: Any,
    threshold: float,
    *,
    prevalence: float | None = None,
    dataset_size: int | None = None,
) -> ThresholdChoice:
    """What a given threshold does on the labelled sample (criterion "fixed")."""
    y, p = _as_arrays(y, p)
    n_fake = int(y.sum())
    n_real = len(y) - n_fake
    r = removed(p, threshold)
    tpr = float(r[y == 1].mean()) if n_fake else 0.0
    fpr = float(r[y == 0].mean()) if n_real else 0.0
    prev = n_fake / len(y) if prevalence is None else float(prevalence)
    denom = prev * tpr + (1 - prev) * fpr
    return ThresholdChoice(
        criterion="fixed",
        target=None,
        threshold=float(threshold),
        precision=float(prev * tpr / denom) if denom > 0 else None,
        recall=tpr,
        fpr=fpr,
        expected=_expected(tpr, fpr, len(y) if dataset_size is None else int(dataset_size), prev),
    )


@dataclass
class ReviewBand:
    """Images with `low <= fake_prob < high` go to a person; below `low` they are kept, at or
    above `high` removed (`DecisionRule(threshold=high, review_band=(low, high))`)."""

    low: float
    high: float
    threshold: float
    budget: float
    errors_caught: float  # expected wrong automatic decisions moved into review
    errors_left: float  # expected wrong automatic decisions that remain
    expected: Expected

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def review_band(
    y: Any,
    p: Any,
    threshold: float,
    budget: float,
    *,
    prevalence: float | None = None,
    dataset_size: int | None = None,
) -> ReviewBand:
    """The band around `threshold` that holds at most `budget` images of the user's data
    (a count out of `dataset_size`, or a share when below 1) and catches the most mistakes.

    Each labelled image stands for `dataset_size * prevalence / n_fake` Fakes (or the Real
    equivalent) of the user's data. Below the threshold a band catches Fakes that would be
    kept, above it Reals that would be removed; the band grows by whole groups of tied scores,
    into whichever side pays best, until the budget is spent."""
    y, p = _as_arrays(y, p)
    n_fake = int(y.sum())
    n_real = len(y) - n_fake
    n = len(y) if dataset_size is None else int(dataset_size)
    prev = n_fake / len(y) if prevalence is None else float(prevalence)
    cap = budget * n if 0 < budget < 1 else float(budget)
    if cap < 0:
        raise ValueError(f"review budget must be >= 0, got {budget}")
    w = np.where(y == 1, n * prev / max(n_fake, 1), n * (1 - prev) / max(n_real, 1))
    r = removed(p, threshold)
    err = np.where(r, w * (y == 0), w * (y == 1))  # each image's share of wrong decisions

    def groups(mask: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vals = np.unique(p[mask])
        vals = vals[::-1] if descending else vals
        inv = np.searchsorted(np.unique(p[mask]), p[mask])
        if descending:
            inv = len(vals) - 1 - inv
        gw = np.bincount(inv, weights=w[mask], minlength=len(vals))
        ge = np.bincount(inv, weights=err[mask], minlength=len(vals))
        return vals, np.r_[0.0, np.cumsum(gw)], np.r_[0.0, np.cumsum(ge)]

    below_v, below_w, below_e = groups(~r, descending=True)  # nearest the threshold first
    above_v, above_w, above_e = groups(r, descending=False)
    best = (-1.0, 0, 0)
    for i in range(len(below_w)):
        room = cap - below_w[i]
        if room < -1e-9:
            break
        j = int(np.searchsorted(above_w, room + 1e-9, side="right") - 1)
        caught = below_e[i] + above_e[j]
        if caught > best[0] + 1e-12:
            best = (caught, i, j)
    _, i, j = best
    low = threshold if i == 0 else _between(below_v, i, lower=True)
    high = threshold if j == 0 else _between(above_v, j, lower=False)
    in_band = (p >= low) & (p < high)
    rem = p >= high
    fakes, reals = y == 1, y == 0
    tpr = float(rem[fakes].mean()) if n_fake else 0.0
    fpr = float(rem[reals].mean()) if n_real else 0.0
    rv_t = float(in_band[fakes].mean()) if n_fake else 0.0
    rv_f = float(in_band[reals].mean()) if n_real else 0.0
    return ReviewBand(
        low=float(low),
        high=float(high),
        threshold=float(threshold),
        budget=float(cap),
        errors_caught=float(best[0]),
        errors_left=float(err.sum() - best[0]),
        expected=_expected(tpr, fpr, n, prev, rv_t, rv_f),
    )


def _between(vals: np.ndarray, k: int, lower: bool) -> float:
    """Edge just past the first `k` groups of `vals` (sorted away from the threshold)."""
    if k >= len(vals):
        return 0.0 if lower else 1.0  # DecisionRule's band ends at 1: scores of 1.0 are removed
    return float((vals[k - 1] + vals[k]) / 2.0)


# -- unlabelled data --------------------------------------------------------------------------------
def score_counts(
    p: Any, thresholds: Sequence[float] = CANDIDATE_THRESHOLDS, n_unscored: int = 0
) -> list[dict[str, Any]]:
    """For unlabelled scores: how many images each candidate threshold keeps and removes."""
    p = np.asarray(p, dtype=np.float64)
    p = p[np.isfinite(p)]
    rows = []
    for t in thresholds:
        rem = int(removed(p, t).sum())
        rows.append(
            {
                "threshold": float(t),
                "kept": len(p) - rem,
                "removed": rem,
                "removed_share": rem / len(p) if len(p) else 0.0,
                "unscored": int(n_unscored),
            }
        )
    return rows


# -- robustness -----------------------------------------------------------------------------------
def perturb(image: Any, spec: str) -> bytes:
    """Encode an RGB PIL image as `spec` changes it: `jpeg:Q` re-compresses at quality Q,
    `downscale:F` shrinks both sides by F (Lanczos) and stores it losslessly (PNG)."""
    kind, _, arg = spec.partition(":")
    buf = io.BytesIO()
    if kind == "jpeg":
        q = int(arg or 75)
        if not 1 <= q <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {q}")
        image.save(buf, format="JPEG", quality=q)
    elif kind == "downscale":
        f = float(arg or 0.5)
        if not 0 < f <= 1:
            raise ValueError(f"downscale factor must be in (0, 1], got {f}")
        from PIL import Image

        size = (max(1, round(image.width * f)), max(1, round(image.height * f)))
        image.resize(size, Image.Resampling.LANCZOS).save(buf, format="PNG")
    else:
        raise ValueError(f"unknown perturbation {spec!r}: use jpeg:QUALITY or downscale:FACTOR")
    return buf.getvalue()


def check_perturbations(specs: Sequence[str]) -> None:
    """Raise ValueError for a spec `perturb` would refuse, before any image is scored."""
    from PIL import Image

    probe = Image.new("RGB", (8, 8))
    for spec in specs:
        perturb(probe, spec)


def robustness_probe(
    scorer: Any,
    images: Sequence[Any],
    y: Any,
    threshold: float,
    *,
    perturbations: Sequence[str] = DEFAULT_PERTURBATIONS,
    baseline: Any | None = None,
    chunk_size: int = 64,
    calibration: Calibration | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Re-score the labelled images after each perturbation; report how ROC-AUC and the
    threshold's precision, recall and FPR move against the unperturbed scores (`baseline`, or
    scored here). With `calibration` (a scorer built `with_logits=True`) the threshold applies
    to the calibrated probabilities of the logit gaps. Every image is decoded once per chunk
    with `curate.pipeline.decode.read_image`; `progress(k)` is called after each chunk of `k` images."""
    from curate.pipeline.decode import read_image

    check_perturbations(perturbations)
    y = np.asarray(y).astype(np.int8)
    if calibration is not None and not getattr(scorer, "with_logits", False):
        raise ValueError("a calibrated probe needs a scorer built with with_logits=True")

    def probs(items: Sequence[Any]) -> list[float]:
        out = scorer.score_images(items)
        if calibration is None:
            return [np.nan if v is None else v for v in out["fake_prob"]]
        return [
            np.nan if a is None else float(apply_calibration(calibration, a - b))
            for a, b in zip(out["fake_logit"], out["real_logit"], strict=True)
        ]

    scores = {s: np.full(len(images), np.nan) for s in perturbations}
    base = np.full(len(images), np.nan) if baseline is None else np.asarray(baseline, float)
    for start in range(0, len(images), chunk_size):
        chunk = images[start : start + chunk_size]
        if baseline is None:
            base[start : start + len(chunk)] = probs(chunk)
        decoded = [read_image(x)[0] for x in chunk]
        for spec in perturbations:
            encoded = [None if im is None else perturb(im, spec) for im in decoded]
            scores[spec][start : start + len(chunk)] = probs(encoded)
        if progress is not None:
            progress(len(chunk))
    rows = [_probe_row("original", y, base, threshold, None)]
    for spec in perturbations:
        rows.append(_probe_row(spec, y, scores[spec], threshold, rows[0]))
    return rows


def _probe_row(
    name: str, y: np.ndarray, p: np.ndarray, threshold: float, base: dict | None
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(p)
    yy, pp = y[ok], p[ok]
    row: dict[str, Any] = {"perturbation": name, "n": int(ok.sum())}
    two = len(yy) and not _both_classes(yy)
    row["roc_auc"] = float(roc_auc_score(yy, pp)) if two else None
    s = threshold_summary(yy, pp, threshold) if len(yy) else None
    row["precision"] = s.precision if s else None
    row["recall"] = s.recall if s else None
    row["fpr"] = s.fpr if s else None
    row["mean_fake_prob"] = float(pp.mean()) if len(pp) else None
    if base is not None:
        for k in ("roc_auc", "precision", "recall", "fpr"):
            a, b = row[k], base[k]
            row[f"delta_{k}"] = None if a is None or b is None else a - b
    return row


# -- a labelled sample, read from a source --------------------------------------------------------
@dataclass
class LabelledSample:
    """The scored, labelled rows of a source (unscored and unlabelled rows are counted, not kept)."""

    y: np.ndarray  # 1 Fake / 0 Real
    p: np.ndarray  # fake_prob as scored (calibrated if the scorer had a calibration)
    gap: np.ndarray  # raw logit gap fake_logit - real_logit (before any calibration)
    rows: np.ndarray  # row index in the source
    names: list[str | None]
    groups: list[str | None]
    n_rows: int = 0
    n_unlabelled: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # rows that could not be scored
    gap_from_logits: bool = True  # False: gaps recovered from float32 probabilities (clipped)
    model: str | None = None
    calibration: Calibration | None = None  # the one the scores were made with

    def __len__(self) -> int:
        return len(self.y)


def _folder_label(image: Any) -> str | None:
    """A folder source's label: the top-level folder of the image's relative path."""
    path = image.get("path") if isinstance(image, dict) else image
    if not isinstance(path, str):
        return None
    parts = path.replace("\\", "/").split("/")
    return parts[0] if len(parts) > 1 else None


def _parent(image: Any) -> str | None:
    path = image.get("path") if isinstance(image, dict) else image
    if not isinstance(path, str) or "/" not in path.replace("\\", "/"):
        return None
    return path.replace("\\", "/").rsplit("/", 1)[0]


def collect_labelled(
    source: Any,
    label_column: str,
    *,
    scorer: Any | None = None,
    label_map: Mapping[str, str] | None = None,
    group_column: str | None = None,
    batch_size: int = 64,
    rescore: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LabelledSample:
    """Read labels and scores from a `curate.sources.Source`.

    Rows that already carry `fake_prob` (a file written by `curate score`) are used as they
    are unless `rescore`; otherwise the images go through `scorer.score_images` (built with
    `with_logits=True` so a calibration can be fitted on exact logit gaps). For a folder of
    images the label is each image's top-level folder (`fake/x.jpg`, `real/y.png`) and the
    group its parent folder, unless the batch has a column of that name."""
    from curate.scorer import DeepfakeScorer

    if label_column is None:
        raise ValueError("a label column is required")
    img_col = source.image_column
    labels: list[Any] = []
    probs: list[float] = []
    gaps: list[float] = []
    rows: list[int] = []
    names: list[str | None] = []
    groups: list[str | None] = []
    errors: list[dict[str, Any]] = []
    n_rows = n_unlabelled = 0
    from_logits = True
    meta_cal: Calibration | None = None
    model = getattr(scorer, "model", None)
    if getattr(source, "kind", None) == "parquet":
        model, meta_cal = _parquet_scoring(source, model)
    scorer_cal = getattr(scorer, "calibration", None)
    names_of = _class_label_names(source, label_column)
    for batch in source.batches(batch_size):
        images = batch.get(img_col, [])
        k = len(next(iter(batch.values()))) if batch else 0
        if label_column in batch:
            raw = batch[label_column]
            if names_of is not None:  # a datasets ClassLabel: its ids stand for these names
                raw = [None if v is None or v < 0 else names_of[v] for v in raw]
        elif getattr(source, "kind", None) in ("folder", "image"):
            raw = [_folder_label(im) for im in images]
        else:
            raise EvaluationError(
                f"no label column {label_column!r} in the source (columns: {', '.join(batch)})"
            )
        if group_column is not None and group_column not in batch:
            raise EvaluationError(f"no group column {group_column!r} in the source")
        grp = batch[group_column] if group_column else [_parent(im) for im in images]
        if "fake_prob" in batch and not rescore:
            fp = batch["fake_prob"]
            err = batch.get("deepfake_error", [None] * k)
            if "fake_logit" in batch and "real_logit" in batch:
                g = [
                    None if a is None or b is None else a - b
                    for a, b in zip(batch["fake_logit"], batch["real_logit"], strict=True)
                ]
            else:
                from_logits = False
                g = [None if v is None else float(gap_from_prob([v], meta_cal)[0]) for v in fp]
        else:
            if scorer is None:
                scorer = DeepfakeScorer(with_logits=True)
                model = scorer.model
            out = scorer.score_images(images)
            fp, err = out["fake_prob"], out["deepfake_error"]
            if "fake_logit" in out:
                g = [
                    None if a is None else a - b
                    for a, b in zip(out["fake_logit"], out["real_logit"], strict=True)
                ]
            else:
                from_logits = False
                g = [None if v is None else float(gap_from_prob([v], scorer_cal)[0]) for v in fp]
            meta_cal = scorer_cal
        for i in range(k):
            row = n_rows + i
            name = images[i].get("path") if isinstance(images[i], dict) else None
            if name is None and isinstance(images[i], str):
                name = images[i]
            if raw[i] is None or raw[i] == "":
                n_unlabelled += 1
                continue
            if fp[i] is None or g[i] is None or (isinstance(fp[i], float) and math.isnan(fp[i])):
                errors.append({"row": row, "image": name, "error": err[i] or "no score"})
                continue
            labels.append(raw[i])
            probs.append(float(fp[i]))
            gaps.append(float(g[i]))
            rows.append(row)
            names.append(name)
            groups.append(None if grp[i] is None else str(grp[i]))
        n_rows += k
        if progress is not None:
            progress(k)
    y, ok = encode_labels(labels, label_map)
    return LabelledSample(
        y=y,
        p=np.asarray(probs, dtype=np.float64),
        gap=np.asarray(gaps, dtype=np.float64),
        rows=np.asarray(rows, dtype=np.int64),
        names=names,
        groups=groups,
        n_rows=n_rows,
        n_unlabelled=n_unlabelled,
        errors=errors,
        gap_from_logits=from_logits,
        model=model,
        calibration=meta_cal,
    )


def _class_label_names(source: Any, column: str) -> list[str] | None:
    features = getattr(source, "features", None)
    try:
        feature = features[column] if features is not None else None
    except (KeyError, TypeError):
        return None
    names = getattr(feature, "names", None)
    return list(names) if isinstance(names, list) and names else None


def _parquet_scoring(source: Any, model: str | None) -> tuple[str | None, Calibration | None]:
    """Model id and calibration recorded in a scored Parquet file's metadata, if any."""
    from curate.io.parquet import curate_metadata as read_metadata

    try:
        meta = read_metadata(source.identity["files"][0][0])
    except (KeyError, IndexError, OSError, TypeError):
        return model, None
    cal = None
    try:
        raw = json.loads(meta.get("curate.calibration", "null"))
        if raw:
            cal = Calibration(
                slope=float(raw["slope"]),
                intercept=float(raw.get("intercept", 0.0)),
                method=str(raw.get("method", "platt")),
                model=raw.get("model"),
            )
    except (ValueError, KeyError, TypeError):
        cal = None
    return meta.get("curate.model", model), cal


def group_breakdown(
    groups: Sequence[str | None], y: np.ndarray, p: np.ndarray, threshold: float
) -> list[dict[str, Any]]:
    """Per group (a generator, a source folder...): how many images, how many Fake, and the
    share the threshold removes: a new generator the detector misses shows up here."""
    out = []
    keys = sorted({g for g in groups if g is not None})
    if len(keys) < 2:
        return out
    g_arr = np.array([g if g is not None else "" for g in groups], dtype=object)
    for key in keys:
        m = g_arr == key
        out.append(
            {
                "group": key,
                "n": int(m.sum()),
                "fake": int(y[m].sum()),
                "real": int(m.sum() - y[m].sum()),
                "removed_share": float(removed(p[m], threshold).mean()),
                "mean_fake_prob": float(p[m].mean()),
            }
        )
    return out


# -- the whole evaluation, and its report ---------------------------------------------------------
@dataclass
class EvalOptions:
    threshold: float = 0.5  # the cut the card-style table is computed at
    target_precision: float | None = None
    target_recall: float | None = None
    max_fpr: float | None = None
    review_budget: float | None = None  # images (or a share, below 1) to review by hand
    prevalence: float | None = None  # share of Fakes in the data to curate (default: sample's)
    dataset_size: int | None = None  # images in the data to curate (default: sample size)
    confidence: float | None = None  # conservative (Clopper-Pearson) threshold choice
    fit_calibration: str | None = None  # "temperature" | "platt"
    calibration_holdout: float = 0.5
    n_boot: int = 1000
    n_bins: int = 15
    seed: int = 0


# Reported when no target is given: what a curator usually asks first.
DEFAULT_TARGETS = (("precision", 0.99), ("recall", 0.95), ("max_fpr", 0.01))


@dataclass
class EvalReport:
    source: str
    model: str | None
    options: EvalOptions
    counts: dict[str, int]
    metrics: Metrics
    ci: dict[str, tuple[float, float]]
    calibration: CalibrationFit | None
    thresholds: list[ThresholdChoice]
    chosen: ThresholdChoice
    review: ReviewBand | None
    groups: list[dict[str, Any]]
    scored_with: Calibration | None = None
    chosen_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    hardest: list[dict[str, Any]] = field(default_factory=list)
    robustness: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calibration"] = self.calibration.to_dict() if self.calibration else None
        d["ci"] = {k: list(v) for k, v in self.ci.items()}
        d["chosen_ci"] = {k: list(v) for k, v in self.chosen_ci.items()}
        d["threshold_scale"] = "calibrated" if self.calibrated else "as scored"
        for t in [d["chosen"], *d["thresholds"]]:
            t["threshold_uncalibrated"] = self.uncalibrated(t["threshold"])
        if d["review"]:
            d["review"]["low_uncalibrated"] = self.uncalibrated(self.review.low)
            d["review"]["high_uncalibrated"] = self.uncalibrated(self.review.high)
        return d

    def uncalibrated(self, t: float | None) -> float | None:
        """A threshold on the fitted calibration's probabilities, on the scores as they were."""
        if t is None or not self.calibrated:
            return t
        if t <= 0.0 or t >= 1.0:
            return t
        cal = self.calibration.calibration
        gap = (float(gap_from_prob([t])[0]) - cal.intercept) / cal.slope
        return float(apply_calibration(self.scored_with, gap))


def evaluate_sample(sample: LabelledSample, options: EvalOptions | None = None) -> EvalReport:
    """Metrics, bootstrap intervals, optional calibration fit, thresholds, review band and
    group breakdown for a labelled sample. Thresholds are chosen on the probabilities the user
    will filter on: calibrated ones when a calibration is fitted here."""
    o = options or EvalOptions()
    y, p = sample.y, sample.p
    if len(sample) == 0:
        raise EvaluationError(
            f"no labelled, scored images among {sample.n_rows} rows "
            f"({sample.n_unlabelled} without a label, {len(sample.errors)} unscored)"
        )
    notes: list[str] = []
    metrics = compute_metrics(y, p, o.threshold, o.n_bins)
    notes += metrics.notes
    ci = bootstrap_ci(y, p, o.threshold, n_boot=o.n_boot, seed=o.seed, n_bins=o.n_bins)
    fit = None
    p_use = p
    if o.fit_calibration:
        if not sample.gap_from_logits:
            notes.append(
                "the source has no fake_logit/real_logit: the calibration was fitted on gaps "
                "recovered from float32 fake_prob (clipped at about +-16)"
            )
        fit = calibrate(
            y,
            sample.gap,
            p,
            method=o.fit_calibration,
            test_fraction=o.calibration_holdout,
            seed=o.seed,
            model=sample.model,
            n_bins=o.n_bins,
        )
        if fit.calibration.slope <= 0:
            notes.append(
                "the fitted calibration has a negative slope: on this sample the detector ranks "
                "Real images above Fake ones; do not use it"
            )
        p_use = apply_calibration(fit.calibration, sample.gap)
    common = dict(prevalence=o.prevalence, dataset_size=o.dataset_size)
    targets = [
        (k, v)
        for k, v in (
            ("precision", o.target_precision),
            ("recall", o.target_recall),
            ("max_fpr", o.max_fpr),
        )
        if v is not None
    ]
    explicit = bool(targets)
    choices: list[ThresholdChoice] = []
    for crit, value in targets or DEFAULT_TARGETS:
        try:
            choices.append(
                choose_threshold(y, p_use, **{crit: value}, confidence=o.confidence, **common)
            )
        except EvaluationError as exc:
            notes.append(str(exc))
    fixed = threshold_summary(y, p_use, o.threshold, **common)
    reached = [c for c in choices if c.threshold is not None]
    chosen = reached[0] if explicit and reached else fixed
    if explicit and not reached:
        notes.append(f"no target could be met; decisions below use the threshold {o.threshold:g}")
    notes += [c.note for c in choices if c.note]
    band = None
    if o.review_budget is not None:
        band = review_band(y, p_use, chosen.threshold, o.review_budget, **common)
        if band.low == band.high:
            notes.append("the review budget is too small to hold even one group of tied scores")
    return EvalReport(
        source="",
        model=sample.model,
        options=o,
        counts={
            "rows": sample.n_rows,
            "labelled": len(sample),
            "unlabelled": sample.n_unlabelled,
            "unscored": len(sample.errors),
            "fake": int(y.sum()),
            "real": int(len(y) - y.sum()),
        },
        metrics=metrics,
        ci=ci,
        calibration=fit,
        thresholds=[fixed, *choices],
        chosen=chosen,
        review=band,
        groups=group_breakdown(sample.groups, y, p_use, chosen.threshold),
        chosen_ci=threshold_ci(
            y, p_use, chosen.threshold, prevalence=o.prevalence, n_boot=o.n_boot, seed=o.seed
        )
        if chosen.threshold is not None
        else {},
        hardest=hardest_mistakes(
            sample, p_use, o.threshold if chosen.threshold is None else chosen.threshold
        ),
        scored_with=sample.calibration,
        notes=notes,
    )


def hardest_mistakes(
    sample: LabelledSample, p: np.ndarray, threshold: float = 0.5, k: int = 10
) -> list[dict[str, Any]]:
    """Up to `k` Real images the threshold removes, scored most Fake first, and up to `k`
    Fake images it keeps, scored most Real first: where label noise and the detector's blind
    spots show first."""
    out = []
    r = removed(p, threshold)
    for cls, name, order, wrong in ((0, REAL, -p, r), (1, FAKE, p, ~r)):
        idx = np.flatnonzero((sample.y == cls) & wrong)
        for i in idx[np.argsort(order[idx], kind="stable")][:k]:
            out.append(
                {
                    "label": name,
                    "fake_prob": float(p[i]),
                    "image": sample.names[i],
                    "row": int(sample.rows[i]),
                    "group": sample.groups[i],
                }
            )
    return out


def sample_from_columns(
    labels: Sequence[Any],
    fake_prob: Sequence[float | None],
    *,
    fake_logit: Sequence[float | None] | None = None,
    real_logit: Sequence[float | None] | None = None,
    label_map: Mapping[str, str] | None = None,
    names: Sequence[str | None] | None = None,
    groups: Sequence[str | None] | None = None,
    model: str | None = None,
    calibration: Calibration | None = None,
) -> LabelledSample:
    """A `LabelledSample` from columns already in hand (say, a `datasets.Dataset` after
    `ds.map(scorer)`): rows without a label or a score are counted and left out."""
    n = len(labels)
    if len(fake_prob) != n:
        raise ValueError(f"{n} labels but {len(fake_prob)} scores")
    keep = [
        i
        for i in range(n)
        if labels[i] not in (None, "")
        and fake_prob[i] is not None
        and not (isinstance(fake_prob[i], float) and math.isnan(fake_prob[i]))
    ]
    kept = set(keep)
    unlabelled = sum(1 for v in labels if v in (None, ""))
    y, _ = encode_labels([labels[i] for i in keep], label_map)
    p = np.asarray([fake_prob[i] for i in keep], dtype=np.float64)
    if fake_logit is not None and real_logit is not None:
        gap = np.asarray([fake_logit[i] - real_logit[i] for i in keep], dtype=np.float64)
    else:
        gap = gap_from_prob(p, calibration)
    return LabelledSample(
        y=y,
        p=p,
        gap=gap,
        rows=np.asarray(keep, dtype=np.int64),
        names=[names[i] for i in keep] if names is not None else [None] * len(keep),
        groups=[groups[i] for i in keep] if groups is not None else [None] * len(keep),
        n_rows=n,
        n_unlabelled=unlabelled,
        errors=[
            {"row": i, "image": names[i] if names is not None else None, "error": "no score"}
            for i in range(n)
            if labels[i] not in (None, "") and i not in kept
        ],
        gap_from_logits=fake_logit is not None and real_logit is not None,
        model=model,
        calibration=calibration,
    )


def calibrated_probs(report: EvalReport, sample: LabelledSample) -> np.ndarray:
    """The probabilities thresholds in `report` apply to."""
    if report.calibration is None:
        return sample.p
    return apply_calibration(report.calibration.calibration, sample.gap)


def probe_indices(y: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """A stratified random subset of at most `limit` rows (sorted), for the robustness probe."""
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    strat = y if min(y.sum(), len(y) - y.sum()) >= 2 and limit >= 2 else None
    keep, _ = train_test_split(idx, train_size=limit, stratify=strat, random_state=seed)
    return np.sort(keep)


def gather_images(source: Any, rows: Sequence[int], batch_size: int = 64) -> list[Any]:
    """The image values of the given source rows (sorted), reading the source once more."""
    wanted = {int(r): i for i, r in enumerate(rows)}
    out: list[Any] = [None] * len(rows)
    offset = 0
    last = max(wanted) if wanted else -1
    for batch in source.batches(batch_size):
        images = batch[source.image_column]
        for j, im in enumerate(images):
            if offset + j in wanted:
                out[wanted[offset + j]] = im
        offset += len(images)
        if offset > last:
            break
    return out


# -- rendering --------------------------------------------------------------------------------------
def _f(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _thr(v: float | None) -> str:
    return "none" if v is None else f"{v:.6g}"


def _count(v: float) -> str:
    return f"{v:,.0f}"


def headline(report: EvalReport) -> str:
    """One line of the figures a curator reads first."""
    m = report.metrics
    return (
        f"ROC-AUC {_f(m.roc_auc)}  AP {_f(m.average_precision)}  "
        f"TPR@1%FPR {_f(m.tpr_at_1pct_fpr)}  TPR@5%FPR {_f(m.tpr_at_5pct_fpr)}  ECE {_f(m.ece)}"
    )


def _threshold_rows(report: EvalReport) -> list[list[str]]:
    rows = []
    for c in report.thresholds:
        e = c.expected
        target = "" if c.target is None else f"{c.target:g}"
        rows.append(
            [
                c.criterion + (" *" if c is report.chosen else ""),
                target,
                _thr(c.threshold),
                _f(c.precision),
                _f(c.recall),
                _f(c.fpr),
                _count(e.kept) if e else "",
                _count(e.removed) if e else "",
                _count(e.real_removed) if e else "",
                _count(e.fake_kept) if e else "",
            ]
        )
    return rows


THRESHOLD_HEADER = [
    "criterion",
    "target",
    "threshold",
    "precision",
    "recall",
    "FPR",
    "kept",
    "removed",
    "Real removed",
    "Fake kept",
]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def filter_args(report: EvalReport) -> str:
    """`curate filter` options for the chosen decision (9 digits: exact for float32 scores)."""
    if report.chosen.threshold is None:
        return ""
    args = f"--threshold {report.chosen.threshold:.9g}"
    if report.review and report.review.low < report.review.high:
        args += f" --review-band {report.review.low:.9g} {report.review.high:.9g}"
    return args


def _chosen_ci_text(report: EvalReport) -> str:
    c, ci = report.chosen, report.chosen_ci
    parts = []
    for key, value in (("precision", c.precision), ("recall", c.recall), ("FPR", c.fpr)):
        lo_hi = ci.get(key.lower())
        rng = f" ({lo_hi[0]:.4f}-{lo_hi[1]:.4f})" if lo_hi else ""
        parts.append(f"{key} {_f(value)}{rng}")
    return ", ".join(parts) + " (95 % bootstrap intervals)"


def console_summary(report: EvalReport) -> str:
    """What `curate eval` prints: the card-style table, the headline figures, the thresholds."""
    m = report.metrics
    c = report.counts
    out = [
        f"{c['labelled']} labelled images ({c['fake']} Fake, {c['real']} Real); "
        f"{c['unscored']} unscored, {c['unlabelled']} unlabelled",
        f"Classification report (Fake if fake_prob >= {m.threshold:g}):",
        m.report.rstrip(),
        "",
        headline(report),
    ]
    if report.calibration:
        f = report.calibration
        out.append(
            f"Calibration ({f.calibration.method}, slope {f.calibration.slope:.4g}, intercept "
            f"{f.calibration.intercept:.4g}): held-out ECE {f.ece_before:.4f} -> {f.ece_after:.4f}"
        )
    scale = "calibrated fake_prob" if report.calibrated else "fake_prob"
    out.append(f"Thresholds (remove when {scale} >= threshold; * = chosen):")
    widths = [
        max(len(r[i]) for r in [THRESHOLD_HEADER, *_threshold_rows(report)]) for i in range(10)
    ]
    for r in [THRESHOLD_HEADER, *_threshold_rows(report)]:
        out.append("  " + "  ".join(x.rjust(w) for x, w in zip(r, widths, strict=True)))
    if report.chosen_ci:
        out.append(f"Chosen threshold {_thr(report.chosen.threshold)}: {_chosen_ci_text(report)}")
    if report.review:
        b = report.review
        out.append(
            f"Review band [{_thr(b.low)}, {_thr(b.high)}): ~{_count(b.expected.review)} images "
            f"to review, catching ~{_count(b.errors_caught)} wrong decisions"
        )
    out += [f"note: {n}" for n in report.notes]
    if report.chosen.threshold is not None:
        out.append(
            f"Filter with: curate filter SCORED.parquet -o KEPT.parquet {filter_args(report)}"
        )
    return "\n".join(out)


def render_markdown(report: EvalReport, calibration_file: str | None = None) -> str:
    """The Markdown report written beside the plots."""
    m, o, c = report.metrics, report.options, report.counts
    lines = [
        "# Detector evaluation",
        "",
        f"- source: `{report.source}`",
        f"- model: `{report.model}`",
        f"- images: {c['rows']} rows, {c['labelled']} labelled and scored "
        f"({c['fake']} Fake, {c['real']} Real), {c['unscored']} unscored, "
        f"{c['unlabelled']} without a label",
    ]
    if report.scored_with:
        sw = report.scored_with
        lines.append(
            f"- scored with calibration: slope {sw.slope:.6g}, intercept {sw.intercept:.6g}"
        )
    lines += [
        "",
        f"## Classification report (Fake if fake_prob >= {m.threshold:g})",
        "",
        "```",
        m.report.rstrip(),
        "```",
        "",
        "Confusion matrix (rows: true class, columns: predicted):",
        "",
        _md_table(
            ["", "pred Fake", "pred Real"], [["Fake", *m.confusion[0]], ["Real", *m.confusion[1]]]
        ),
        "",
        "## Headline figures",
        "",
    ]
    conf = "95 % CI (stratified bootstrap, " + f"{o.n_boot} resamples)"
    rows = []
    for key, label in (
        ("accuracy", "accuracy"),
        ("roc_auc", "ROC-AUC"),
        ("average_precision", "average precision"),
        ("tpr_at_1pct_fpr", "TPR at 1 % FPR"),
        ("tpr_at_5pct_fpr", "TPR at 5 % FPR"),
        ("ece", f"ECE ({o.n_bins} bins)"),
        ("brier", "Brier score"),
    ):
        ci = report.ci.get(key)
        rows.append(
            [label, _f(getattr(m, key)), "" if ci is None else f"{ci[0]:.4f} - {ci[1]:.4f}"]
        )
    lines += [_md_table(["figure", "value", conf], rows), ""]
    if report.calibration:
        f = report.calibration
        cal = f.calibration
        lines += [
            f"## Calibration ({cal.method})",
            "",
            f"`fake_prob = sigmoid({cal.slope:.6g} * (fake_logit - real_logit) + "
            f"{cal.intercept:.6g})`, fitted on {f.n_fit} images, "
            + (
                f"measured on {f.n_test} held-out images:"
                if o.calibration_holdout > 0
                else "measured on the same images (no hold-out):"
            ),
            "",
            _md_table(
                ["", "before", "after"],
                [
                    ["ECE", _f(f.ece_before), _f(f.ece_after)],
                    ["Brier score", _f(f.brier_before), _f(f.brier_after)],
                    ["log loss", _f(f.log_loss_before), _f(f.log_loss_after)],
                ],
            ),
            "",
        ]
    scale = "calibrated `fake_prob`" if report.calibrated else "`fake_prob`"
    prev = report.chosen.expected.prevalence if report.chosen.expected else None
    size = report.chosen.expected.dataset_size if report.chosen.expected else None
    lines += [
        "## Thresholds",
        "",
        f"Remove when {scale} >= threshold. Precision is the share of Fake images among those "
        f"removed at a Fake share of {_f(prev)}; counts are expected out of {size} images"
        + (f", with {o.confidence:g} confidence bounds" if o.confidence else "")
        + ". `*` marks the threshold used below.",
        "",
        _md_table(THRESHOLD_HEADER, _threshold_rows(report)),
        "",
    ]
    if report.chosen_ci:
        lines += [f"At the chosen threshold: {_chosen_ci_text(report)}.", ""]
    if report.review:
        b = report.review
        e = b.expected
        lines += [
            "## Review band",
            "",
            f"Review by hand when {_thr(b.low)} <= {scale} < {_thr(b.high)} (budget "
            f"{_count(b.budget)} images): expected {_count(e.kept)} kept, {_count(e.review)} to "
            f"review, {_count(e.removed)} removed; the band catches ~{_count(b.errors_caught)} "
            f"wrong automatic decisions, ~{_count(b.errors_left)} remain.",
            "",
        ]
    if report.groups:
        lines += [
            f"## By group (removed at threshold {_thr(report.chosen.threshold)})",
            "",
            _md_table(
                ["group", "images", "Fake", "Real", "removed share", "mean fake_prob"],
                [
                    [
                        g["group"],
                        g["n"],
                        g["fake"],
                        g["real"],
                        _f(g["removed_share"]),
                        _f(g["mean_fake_prob"]),
                    ]
                    for g in report.groups
                ],
            ),
            "",
        ]
    if report.robustness:
        lines += [
            f"## Robustness (threshold {_thr(report.chosen.threshold)})",
            "",
            _md_table(
                [
                    "perturbation",
                    "images",
                    "ROC-AUC",
                    "d AUC",
                    "precision",
                    "d precision",
                    "recall",
                    "d recall",
                    "FPR",
                ],
                [
                    [
                        r["perturbation"],
                        r["n"],
                        _f(r["roc_auc"]),
                        _f(r.get("delta_roc_auc"), 4) if "delta_roc_auc" in r else "",
                        _f(r["precision"]),
                        _f(r.get("delta_precision")) if "delta_precision" in r else "",
                        _f(r["recall"]),
                        _f(r.get("delta_recall")) if "delta_recall" in r else "",
                        _f(r["fpr"]),
                    ]
                    for r in report.robustness
                ],
            ),
            "",
        ]
    if report.hardest:
        lines += [
            "## Most confident mistakes",
            "",
            f"At threshold {_thr(report.chosen.threshold)}: Real images removed, scored most "
            "Fake first, and Fake images kept, scored most Real first. Check them for label "
            "errors and for what the detector misses.",
            "",
            _md_table(
                ["label", scale, "image", "group"],
                [
                    [
                        h["label"],
                        _f(h["fake_prob"]),
                        f"`{h['image']}`" if h["image"] else h["row"],
                        h["group"] or "",
                    ]
                    for h in report.hardest
                ],
            ),
            "",
        ]
    use = report.chosen
    lines += ["## Use it", ""]
    if use.threshold is not None:
        cal = f" --calibration {calibration_file}" if calibration_file else ""
        lines += [
            "```bash",
            f"curate score SOURCE -o scored.parquet{cal}",
            f"curate filter scored.parquet -o kept.parquet {filter_args(report)}",
            "```",
            "",
        ]
        if report.calibrated:
            lines += [
                f"On scores made without this calibration the same cut is "
                f"{_thr(report.uncalibrated(use.threshold))}.",
                "",
            ]
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    if report.files:
        lines += ["## Files", "", *[f"- `{f}`" for f in report.files], ""]
    return "\n".join(lines)


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _json(data: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"cannot write {type(o).__name__} as JSON")

    # allow_nan=False: a NaN that slipped through fails loudly instead of writing invalid JSON.
    return json.dumps(data, indent=2, default=default, allow_nan=False) + "\n"


def write_eval_report(
    report: EvalReport, sample: LabelledSample, out_dir: str, *, overwrite: bool = False
) -> list[str]:
    """Write report.md, report.json, scores.parquet (one row per labelled image, no pixels),
    the plots (hist.png, roc.png, pr.png, reliability.png, robustness.png after a probe) and
    calibration.json when one was fitted. Returns the paths written."""
    from curate.evaluation import plots
    from curate.io.parquet import write_parquet

    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "report.json")
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a report; pass --overwrite to replace it")
    y, p = sample.y, sample.p
    p_use = calibrated_probs(report, sample)
    written: list[str] = []

    def path(name: str) -> str:
        written.append(name)
        return os.path.join(out_dir, name)

    cal_file = None
    if report.calibration:
        cal_file = path("calibration.json")
        report.calibration.calibration.save(cal_file)
    lines = {"threshold": report.chosen.threshold} if report.chosen.threshold is not None else {}
    if report.review and report.review.low < report.review.high:
        lines = {"review from": report.review.low, "remove from": report.review.high}
    scale = "calibrated fake_prob" if report.calibrated else "fake_prob"
    plots.score_histogram(p_use, path("hist.png"), y=y, thresholds=lines, title=f"{scale} by class")
    if not _both_classes(y):
        picked = [c for c in report.thresholds if c.threshold is not None]
        names = [f"{c.criterion} {c.threshold if c.target is None else c.target:g}" for c in picked]
        roc_marks = {n: (c.fpr, c.recall) for n, c in zip(names, picked, strict=True)}
        pr_marks = {
            n: (c.recall, c.precision)
            for n, c in zip(names, picked, strict=True)
            if c.precision is not None
        }
        plots.roc_plot(y, p, path("roc.png"), marks=roc_marks)
        plots.pr_plot(y, p_use, path("pr.png"), marks=pr_marks)
    curves = {"as scored": p}
    eces = {"as scored": report.metrics.ece}
    if report.calibration:
        curves["calibrated"] = p_use
        eces["calibrated"] = expected_calibration_error(y, p_use, report.options.n_bins)
    plots.reliability_plot(
        y, curves, path("reliability.png"), n_bins=report.options.n_bins, eces=eces
    )
    if report.robustness:
        plots.robustness_plot(report.robustness, path("robustness.png"))
    scores_path = path("scores.parquet")
    if os.path.exists(scores_path):
        os.remove(scores_path)
    write_parquet(
        [
            {
                "row": sample.rows.tolist(),
                "image": list(sample.names),
                "group": list(sample.groups),
                "label": [FAKE if v else REAL for v in y],
                "fake_prob": p.tolist(),
                "logit_gap": sample.gap.tolist(),
                "fake_prob_calibrated": p_use.tolist(),
            }
        ],
        scores_path,
        image_column=None,
        overwrite=True,
    )
    report.files = sorted([*written, "report.md", "report.json"])
    _write_text(path("report.md"), render_markdown(report, cal_file))
    _write_text(target, _json(report.to_dict()))
    written.append("report.json")
    return [os.path.join(out_dir, w) for w in written]


# -- unlabelled scored data: `curate report` -------------------------------------------------------
@dataclass
class ScoreReport:
    source: str
    rows: int
    scored: int
    unscored: int
    model: str | None
    calibration: dict[str, Any] | None  # the one the file was scored with
    quantiles: dict[str, float]
    counts: list[dict[str, Any]]  # per candidate threshold
    rule: dict[str, Any] | None = None  # the decision asked for, with its counts
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_scores(paths: Sequence[str], score_column: str = "fake_prob") -> tuple[np.ndarray, dict]:
    """`fake_prob` of scored Parquet file(s) (NaN where unscored) and the first file's
    `curate.*` metadata; only the score column is read, never the images."""
    import pyarrow.parquet as pq

    from curate.io.parquet import curate_metadata as read_metadata

    parts = []
    for path in paths:
        try:
            schema = pq.read_schema(path)
        except Exception as exc:
            raise ValueError(f"cannot read {path} as Parquet: {exc}") from None
        if score_column not in schema.names:
            raise ValueError(
                f"{path} has no {score_column!r} column (columns: {', '.join(schema.names)}); "
                "score it first with `curate score`"
            )
        col = pq.read_table(path, columns=[score_column]).column(score_column)
        parts.append(col.cast("float64").to_numpy(zero_copy_only=False))
    p = np.concatenate(parts) if parts else np.zeros(0)
    return p, read_metadata(paths[0]) if paths else {}


def summarize_scores(
    p: Any,
    *,
    source: str = "",
    metadata: Mapping[str, str] | None = None,
    thresholds: Sequence[float] = CANDIDATE_THRESHOLDS,
    rule: Any | None = None,
    notes: Sequence[str] = (),
) -> ScoreReport:
    """Counts at candidate thresholds (and for `rule`, a `curate.filtering.DecisionRule`) for
    scores without labels: what a cut would remove from this data."""
    p = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(p)
    meta = dict(metadata or {})
    try:
        cal = json.loads(meta.get("curate.calibration", "null"))
    except ValueError:
        cal = None
    qs = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    quantiles = (
        {f"p{int(q * 100):02d}": float(np.quantile(p[ok], q)) for q in qs} if ok.any() else {}
    )
    rule_out = None
    if rule is not None:
        decided = rule.decide_many(p)
        rule_out = {
            "threshold": rule.threshold,
            "review_band": list(rule.review_band) if rule.review_band else None,
            "unscored": rule.unscored,
            **{k: int((decided == k).sum()) for k in ("keep", "remove", "review", "unscored")},
        }
    return ScoreReport(
        source=source,
        rows=len(p),
        scored=int(ok.sum()),
        unscored=int((~ok).sum()),
        model=meta.get("curate.model"),
        calibration=cal,
        quantiles=quantiles,
        counts=score_counts(p[ok], thresholds, int((~ok).sum())),
        rule=rule_out,
        notes=list(notes),
    )


def _same_calibration(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if not a or not b:
        return not a and not b
    return all(
        math.isclose(float(a.get(k, 0.0)), float(b.get(k, 0.0)), rel_tol=1e-9, abs_tol=1e-12)
        for k in ("slope", "intercept")
    )


def rule_from_eval(
    report_json: str, scored_calibration: Mapping[str, Any] | None
) -> tuple[float, tuple[float, float] | None, list[str]]:
    """Threshold and review band from a `curate eval` report.json, on the scale of a file
    scored with `scored_calibration`: thresholds chosen on a calibration fitted by the eval are
    used as they are on files scored with it, and translated back on files scored as the eval
    sample was."""
    try:
        with open(report_json, encoding="utf-8") as f:
            data = json.load(f)
        chosen = data["chosen"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read an eval report from {report_json}: {exc}") from None
    if chosen.get("threshold") is None:
        raise ValueError(f"{report_json} has no chosen threshold (its target was not reached)")
    band = data.get("review")
    notes: list[str] = []
    fitted = (data.get("calibration") or {}).get("calibration")
    sample_scale = data.get("scored_with")  # the calibration the eval's sample was scored with
    if fitted is not None and _same_calibration(scored_calibration, fitted):
        use_raw = False
    elif _same_calibration(scored_calibration, sample_scale):
        use_raw = fitted is not None
        if use_raw:
            notes.append(
                "the eval chose its threshold on calibrated scores and this file was scored "
                "without that calibration: using the equivalent threshold on its scale"
            )
    else:

        def describe(c: Mapping[str, Any] | None) -> str:
            return (
                "no calibration"
                if not c
                else f"slope {c['slope']:.6g}, intercept {c['intercept']:.6g}"
            )

        expected = describe(fitted) + (f" or {describe(sample_scale)}" if fitted else "")
        raise ValueError(
            f"this file was scored with {describe(scored_calibration)} but the eval's thresholds "
            f"apply to scores made with {expected}; score it again with the matching --calibration"
        )
    key = "threshold_uncalibrated" if use_raw else "threshold"
    t = float(chosen[key])
    rb = None
    if band and band["low"] < band["high"]:
        lo, hi = ("low_uncalibrated", "high_uncalibrated") if use_raw else ("low", "high")
        rb = (float(band[lo]), float(band[hi]))
    return t, rb, notes


def render_score_markdown(r: ScoreReport) -> str:
    lines = [
        "# Score report",
        "",
        f"- source: `{r.source}`",
        f"- model: `{r.model}`",
        f"- rows: {r.rows} ({r.scored} scored, {r.unscored} unscored)",
        f"- scored with calibration: {'none' if not r.calibration else json.dumps(r.calibration)}",
        "",
    ]
    if r.quantiles:
        lines += [
            "## fake_prob quantiles",
            "",
            _md_table(list(r.quantiles), [[f"{v:.4f}" for v in r.quantiles.values()]]),
            "",
        ]
    lines += [
        "## Counts at candidate thresholds (remove when fake_prob >= threshold)",
        "",
        _md_table(
            ["threshold", "kept", "removed", "removed share"],
            [
                [f"{c['threshold']:g}", c["kept"], c["removed"], f"{c['removed_share']:.4f}"]
                for c in r.counts
            ],
        ),
        "",
    ]
    if r.rule:
        band = r.rule["review_band"]
        desc = f"threshold {r.rule['threshold']:.6g}" + (
            f", review band [{band[0]:.6g}, {band[1]:.6g})" if band else ""
        )
        lines += [
            f"## Decision ({desc}, unscored: {r.rule['unscored']})",
            "",
            _md_table(
                ["keep", "remove", "review", "unscored"],
                [[r.rule[k] for k in ("keep", "remove", "review", "unscored")]],
            ),
            "",
        ]
    if r.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in r.notes], ""]
    if r.files:
        lines += ["## Files", "", *[f"- `{f}`" for f in r.files], ""]
    return "\n".join(lines)


def write_score_report(
    report: ScoreReport, p: Any, out_dir: str, *, overwrite: bool = False
) -> list[str]:
    """Write report.md, report.json and hist.png for unlabelled scores."""
    from curate.evaluation import plots

    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "report.json")
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a report; pass --overwrite to replace it")
    p = np.asarray(p, dtype=np.float64)
    lines: dict[str, float] = {}
    if report.rule:
        band = report.rule["review_band"]
        if band:
            lines = {"review from": band[0], "remove from": band[1]}
        else:
            lines = {"threshold": report.rule["threshold"]}
    plots.score_histogram(
        p[np.isfinite(p)],
        os.path.join(out_dir, "hist.png"),
        thresholds=lines,
        title=f"fake_prob of {report.scored} scored images",
    )
    report.files = ["hist.png", "report.json", "report.md"]
    _write_text(os.path.join(out_dir, "report.md"), render_score_markdown(report))
    _write_text(target, _json(report.to_dict()))
    return [os.path.join(out_dir, f) for f in report.files]
