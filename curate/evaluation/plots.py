"""PNG plots for evaluation reports: score histograms, ROC, precision-recall, reliability.

matplotlib with the Agg backend (no display needed); every figure is written atomically
(temporary file beside the target, then renamed), so a report folder never holds half a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from curate.evaluation.metrics import reliability_bins
from curate.io.atomic import atomic_path

FAKE_COLOUR, REAL_COLOUR = "#d62728", "#1f77b4"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def _thresholds(ax, lines: Mapping[str, float] | None) -> None:
    for i, (name, t) in enumerate((lines or {}).items()):
        ax.axvline(t, color="k", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=name)


def score_histogram(
    p: Any,
    path: str | os.PathLike,
    *,
    y: Any | None = None,
    thresholds: Mapping[str, float] | None = None,
    title: str = "fake_prob",
    bins: int = 50,
) -> str:
    """Histogram of `fake_prob`, one colour per class when labels `y` (1 Fake) are given, with
    vertical lines at `thresholds` ({label: value}). Log counts: the tails are what matters."""
    plt = _pyplot()
    p = np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    if y is None:
        ax.hist(p, bins=edges, color="#7f7f7f", label=f"scored ({len(p)})")
    else:
        y = np.asarray(y).astype(bool)
        ax.hist(p[y], bins=edges, color=FAKE_COLOUR, alpha=0.6, label=f"Fake ({y.sum()})")
        ax.hist(p[~y], bins=edges, color=REAL_COLOUR, alpha=0.6, label=f"Real ({(~y).sum()})")
    _thresholds(ax, thresholds)
    if len(p) and np.histogram(p, edges)[0].max() > 20:
        ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("fake_prob")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(loc="upper center")
    return _save(fig, path)


def roc_plot(
    y: Any, p: Any, path: str | os.PathLike, *, marks: Mapping[str, tuple[float, float]] = ()
) -> str:
    """ROC curve (sklearn's `RocCurveDisplay`), and again with a log FPR axis so the
    low-FPR region a curator cares about is readable; `marks` are {label: (fpr, tpr)} points."""
    from sklearn.metrics import RocCurveDisplay

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, log in zip(axes, (False, True), strict=True):
        RocCurveDisplay.from_predictions(y, p, pos_label=1, name="detector", ax=ax)
        for name, (f, t) in dict(marks).items():
            ax.plot([max(f, 1e-4) if log else f], [t], "o", label=name)
        if log:
            ax.set_aspect("auto")
            ax.set_xscale("log")
            ax.set_xlim(1e-3, 1)
            ax.set_title("ROC, log FPR")
        else:
            ax.plot([0, 1], [0, 1], color="#aaaaaa", linestyle=":", linewidth=1)
            ax.set_title("ROC (Fake = positive)")
        ax.set_xlabel("Real images removed (FPR)")
        ax.set_ylabel("Fake images removed (TPR)")
        ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def pr_plot(
    y: Any, p: Any, path: str | os.PathLike, *, marks: Mapping[str, tuple[float, float]] = ()
) -> str:
    """Precision-recall of the removed set (sklearn's `PrecisionRecallDisplay`); `marks` are
    {label: (recall, precision)} points."""
    from sklearn.metrics import PrecisionRecallDisplay

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    PrecisionRecallDisplay.from_predictions(y, p, pos_label=1, name="detector", ax=ax)
    for name, (r, pr) in dict(marks).items():
        ax.plot([r], [pr], "o", label=name)
    ax.axhline(float(np.mean(y)), color="#aaaaaa", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("Fake images removed (recall)")
    ax.set_ylabel("Fake share of removed images (precision)")
    ax.set_title("Precision-recall")
    ax.legend(loc="lower left")
    return _save(fig, path)


def reliability_plot(
    y: Any,
    curves: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    n_bins: int = 15,
    eces: Mapping[str, float] | None = None,
) -> str:
    """Reliability diagram: share of Fakes against mean `fake_prob` per bin, one line per
    entry of `curves` ({name: probabilities}, e.g. before and after calibration), with the
    bin counts underneath."""
    plt = _pyplot()
    y = np.asarray(y).astype(float)
    fig, (ax, axc) = plt.subplots(
        2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="#aaaaaa", linestyle=":", label="perfectly calibrated")
    width = 1.0 / n_bins
    for i, (name, p) in enumerate(curves.items()):
        b = reliability_bins(y, np.asarray(p, dtype=float), n_bins)
        has = b["count"] > 0
        label = name if not eces or name not in eces else f"{name} (ECE {eces[name]:.4f})"
        ax.plot(b["mean_prob"][has], b["fake_fraction"][has], "o-", label=label)
        centres = b["edges"][:-1] + width / 2
        axc.bar(centres + (i - 0.5) * width / 3, b["count"], width=width / 3, label=name)
    ax.set_ylabel("share of Fake images")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Reliability of fake_prob")
    ax.legend(loc="upper left")
    if max(axc.get_ylim()) > 50:
        axc.set_yscale("log")
        axc.set_ylim(bottom=0.5)
    axc.set_xlabel("fake_prob (bin mean)")
    axc.set_ylabel("images")
    return _save(fig, path)


def robustness_plot(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> str:
    """ROC-AUC and the chosen threshold's precision/recall per perturbation."""
    plt = _pyplot()
    names = [r["perturbation"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    for k, key in enumerate(("roc_auc", "precision", "recall")):
        vals = [np.nan if r.get(key) is None else r[key] for r in rows]
        ax.bar(x + (k - 1) * 0.27, vals, width=0.27, label=key)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylim(0, 1.02)
    ax.set_title("Robustness: scores after re-compression and downscaling")
    ax.legend(loc="lower left")
    return _save(fig, path)
