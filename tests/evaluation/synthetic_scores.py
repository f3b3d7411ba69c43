"""Labels and scores of a simulated detector, for the evaluation tests (not a test module)."""

from __future__ import annotations

import numpy as np


def synthetic(n: int, seed: int, prevalence: float = 0.4, sep: float = 2.0, scale: float = 1.5):
    """Labels (1 Fake), logit gaps and fake_prob of a detector whose classes overlap."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int8)
    gap = np.where(y == 1, rng.normal(sep, scale, n), rng.normal(-sep, scale, n))
    return y, gap, 1.0 / (1.0 + np.exp(-gap))
