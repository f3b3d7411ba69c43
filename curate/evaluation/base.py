"""What every evaluation module shares: the checked (labels, scores) pair and the removal rule.

Labels `y` are 1 = Fake, 0 = Real (the class a curator removes is the positive one); scores
`p` are `fake_prob`. An image is removed when `fake_prob >= threshold`, exactly as
`curate.filtering.DecisionRule` decides and as `curate.schema.label_for` labels at 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class EvaluationError(ValueError):
    """The labelled sample cannot answer the question asked; the message says why."""


def check_arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """`y` as int8 0/1 and `p` as float64, both 1-D and of one length, or a clear error."""
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


def one_class_reason(y: np.ndarray) -> str | None:
    """Why a sample of a single class cannot define ROC-AUC, AP or TPR/FPR; None for two."""
    n_fake = int(y.sum())
    if n_fake == 0:
        return f"the sample has only Real images ({len(y)}): ROC-AUC, AP and TPR need Fake ones too"
    if n_fake == len(y):
        return f"the sample has only Fake images ({len(y)}): ROC-AUC, AP and FPR need Real ones too"
    return None
