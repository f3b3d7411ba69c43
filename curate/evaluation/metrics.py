"""Decision-quality figures of `fake_prob` against labels: ROC, TPR at FPR, reliability, ECE,
the card-style classification table, and bootstrap intervals.

Figures come from scikit-learn where it has them; a figure a one-class sample cannot define is
None with a note saying why, never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from curate import schema
from curate.evaluation.base import check_arrays, one_class_reason, removed


def _roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for the rule `p >= threshold`, every distinct score kept."""
    from sklearn.metrics import roc_curve

    return roc_curve(y, p, drop_intermediate=False)


def _tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """From an ROC curve: the highest share of Fakes removed by a threshold that removes at
    most `max_fpr` of Reals."""
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
    y, p = check_arrays(y, p)
    b = reliability_bins(y, p, n_bins)
    return float(np.sum(b["count"] * np.abs(b["fake_fraction"] - b["mean_prob"])) / len(y))


@dataclass
class Metrics:
    """The headline figures of `fake_prob` against labels, at one threshold."""

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


def compute_metrics(
    y: Any, p: Any, threshold: float = schema.LABEL_THRESHOLD, n_bins: int = 15
) -> Metrics:
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

    y, p = check_arrays(y, p)
    pred = removed(p, threshold).astype(np.int8)
    notes: list[str] = []
    one_class = one_class_reason(y)
    if one_class:
        notes.append(one_class)
    if pred.sum() == 0:
        notes.append(f"no image is at or above the threshold {threshold:g}: Fake precision is 0")
    common = dict(labels=[1, 0], zero_division=0)
    report = classification_report(
        y, pred, target_names=[schema.FAKE, schema.REAL], digits=4, **common
    )
    report_dict = classification_report(
        y, pred, target_names=[schema.FAKE, schema.REAL], output_dict=True, **common
    )
    n_fake = int(y.sum())
    n_real = len(y) - n_fake
    auc = ap = t1 = t5 = None
    if not one_class:
        auc = float(roc_auc_score(y, p))
        ap = float(average_precision_score(y, p))
        fpr, tpr, _ = _roc_points(y, p)
        t1 = _tpr_at_fpr(fpr, tpr, 0.01)
        t5 = _tpr_at_fpr(fpr, tpr, 0.05)
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


_BOOTSTRAP_METRICS = (
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
    threshold: float = schema.LABEL_THRESHOLD,
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

    y, p = check_arrays(y, p)
    if n_boot < 1:
        return {}
    rng = np.random.default_rng(seed)
    fake_idx, real_idx = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    two = len(fake_idx) > 0 and len(real_idx) > 0
    names = _BOOTSTRAP_METRICS if two else ("accuracy", "ece", "brier")
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
            fpr, tpr, _ = _roc_points(yb, pb)
            draws["roc_auc"][b] = auc(fpr, tpr)
            draws["tpr_at_1pct_fpr"][b] = _tpr_at_fpr(fpr, tpr, 0.01)
            draws["tpr_at_5pct_fpr"][b] = _tpr_at_fpr(fpr, tpr, 0.05)
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
    y, p = check_arrays(y, p)
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
