"""Choosing a threshold from evidence: the cut that meets a precision, recall or FPR target,
what a given cut does, and the review band that catches the most mistakes for a budget.

The rule is `curate.filtering.DecisionRule`'s: remove when `fake_prob >= threshold`. Chosen
thresholds and band edges sit halfway between two observed scores, so the choice does not
depend on how ties at the cut are broken and carries over to new data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.evaluation.base import EvaluationError, check_arrays, removed


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
    """A threshold and what it does on the labelled sample (rates) and on the user's data
    (expected counts); `threshold` is None, with a `note`, when the target cannot be met."""

    criterion: str  # "precision", "recall", "max_fpr" or "fixed"
    target: float | None
    threshold: float | None  # None when no threshold reaches the target
    precision: float | None  # of the removed set, at the data's prevalence
    recall: float  # share of Fakes removed (TPR)
    fpr: float  # share of Reals removed
    expected: Expected | None
    note: str = ""


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
    y, p = check_arrays(y, p)
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
    y, p = check_arrays(y, p)
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
    y, p = check_arrays(y, p)
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
