"""curate.evaluation.robustness: perturbations encode what they say; the probe re-scores."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from curate import evaluation as ev
from curate.calibration import Calibration, fake_probability
from curate.scorer import DeepfakeScorer


def test_perturb_encodes_what_it_says():
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    jpeg = Image.open(io.BytesIO(ev.perturb(img, "jpeg:50")))
    assert jpeg.format == "JPEG" and jpeg.size == (64, 48)
    small = Image.open(io.BytesIO(ev.perturb(img, "downscale:0.5")))
    assert small.format == "PNG" and small.size == (32, 24)
    with pytest.raises(ValueError, match="unknown perturbation"):
        ev.perturb(img, "blur:3")
    with pytest.raises(ValueError, match="quality"):
        ev.perturb(img, "jpeg:0")
    with pytest.raises(ValueError, match="'jpeg:high': the JPEG quality must be a number"):
        ev.perturb(img, "jpeg:high")
    with pytest.raises(ValueError, match="factor must be in"):
        ev.check_perturbations(["downscale:2"])


def test_robustness_probe_rescores_through_the_scorer(tiny_checkpoint, photo_paths, tmp_path):
    scorer = DeepfakeScorer(tiny_checkpoint, with_logits=True, batch_size=4)
    images = [*photo_paths, str(tmp_path / "missing.jpg")]
    y = np.array([1, 0] * 3)[: len(images)]
    out = scorer.score_images(images)
    base = np.array([np.nan if v is None else v for v in out["fake_prob"]])
    calls = []
    rows = ev.robustness_probe(
        scorer, images, y, 0.5, perturbations=("jpeg:30", "downscale:0.25"), progress=calls.append
    )
    assert [r["perturbation"] for r in rows] == ["original", "jpeg:30", "downscale:0.25"]
    assert sum(calls) == len(images)
    assert all(r["n"] == len(photo_paths) for r in rows)  # the missing file is left out
    assert rows[1]["mean_fake_prob"] != pytest.approx(rows[0]["mean_fake_prob"], abs=1e-6)
    ok = np.isfinite(base)
    assert rows[0]["mean_fake_prob"] == pytest.approx(base[ok].mean(), abs=1e-6)
    # A calibrated probe thresholds the calibrated probabilities.
    cal = Calibration(slope=0.5, intercept=0.2)
    rows_c = ev.robustness_probe(
        scorer, images, y, 0.5, perturbations=("jpeg:90",), calibration=cal
    )
    gap = np.subtract(out["fake_logit"][:-1], out["real_logit"][:-1], dtype=np.float64)
    assert rows_c[0]["mean_fake_prob"] == pytest.approx(cal.apply(gap).mean(), abs=1e-6)
    assert rows_c[0]["mean_fake_prob"] != pytest.approx(fake_probability(gap).mean(), abs=1e-3)
    with pytest.raises(ValueError, match="unknown perturbation"):
        ev.robustness_probe(scorer, images, y, 0.5, perturbations=("sharpen",))
    without_logits = DeepfakeScorer(tiny_checkpoint)
    with pytest.raises(ValueError, match="with_logits=True"):
        ev.robustness_probe(without_logits, images, y, 0.5, calibration=cal)
