"""curate.evaluation.calibration: temperature and Platt fits, and the scorer applying a fit."""

from __future__ import annotations

import numpy as np
import pytest

from curate import evaluation as ev
from curate.calibration import Calibration, fake_probability
from curate.scorer import DeepfakeScorer


def test_temperature_fit_lowers_ece_on_overconfident_scores():
    rng = np.random.default_rng(0)
    true_gap = rng.normal(0.0, 2.0, 8000)
    y = (rng.random(8000) < 1 / (1 + np.exp(-true_gap))).astype(int)
    gap = 3.0 * true_gap  # an overconfident detector: true temperature 3
    fit = ev.calibrate(y, gap, method="temperature", test_fraction=0.5)
    assert fit.calibration.slope == pytest.approx(1 / 3, rel=0.1)
    assert fit.calibration.intercept == 0.0
    assert fit.ece_before > 0.05
    assert fit.ece_after < fit.ece_before / 3
    assert fit.log_loss_after < fit.log_loss_before


def test_platt_fit_recovers_shift_and_scorer_applies_it_identically(
    tmp_path, tiny_checkpoint, photo_paths
):
    rng = np.random.default_rng(1)
    true_gap = rng.normal(0.0, 2.0, 8000)
    y = (rng.random(8000) < 1 / (1 + np.exp(-(true_gap + 1.0)))).astype(int)
    gap = 2.0 * true_gap  # calibrated = sigmoid(0.5 * gap + 1)
    fit = ev.calibrate(y, gap, method="platt", model=tiny_checkpoint)
    cal = fit.calibration
    assert cal.slope == pytest.approx(0.5, rel=0.1)
    assert cal.intercept == pytest.approx(1.0, abs=0.15)
    assert fit.ece_after < fit.ece_before / 3
    # Temperature alone cannot fix a shifted prior: Platt beats it here.
    assert fit.ece_after < ev.calibrate(y, gap, method="temperature").ece_after
    path = tmp_path / "calibration.json"
    cal.save(path)
    assert Calibration.load(path) == cal and cal.model == tiny_checkpoint
    # The scorer loads the saved fit and applies it to its logit gaps as the fit defines it.
    scorer = DeepfakeScorer(tiny_checkpoint, calibration=str(path), with_logits=True)
    out = scorer.score_images(photo_paths)
    gaps = np.subtract(out["fake_logit"], out["real_logit"], dtype=np.float64)
    np.testing.assert_allclose(out["fake_prob"], cal.apply(gaps), rtol=1e-6, atol=1e-7)
    assert not np.allclose(out["fake_prob"], fake_probability(gaps), atol=1e-3)


def test_calibration_is_finite_on_separable_data():
    y = np.r_[np.ones(50), np.zeros(50)].astype(int)
    gap = np.r_[np.linspace(1, 5, 50), np.linspace(-5, -1, 50)]
    for method in ("temperature", "platt"):
        cal = ev.fit_calibration(y, gap, method)
        assert np.isfinite(cal.slope) and 0 < cal.slope < 1e3


def test_gap_from_prob_undoes_a_calibration():
    cal = Calibration(slope=0.4, intercept=0.3)
    gap = np.linspace(-8, 8, 33)
    p = cal.apply(gap)
    np.testing.assert_allclose(ev.gap_from_prob(p, cal), gap, atol=1e-6)
    np.testing.assert_allclose(ev.gap_from_prob(fake_probability(gap)), gap, atol=1e-6)
