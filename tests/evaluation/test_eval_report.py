"""curate.evaluation.report and render: a whole evaluation, its report folder and its text."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from synthetic_scores import synthetic

from curate import evaluation as ev
from curate import schema
from curate.calibration import Calibration, fake_probability


def test_evaluate_sample_and_write_report(tmp_path):
    y, gap, _ = synthetic(3000, seed=30)
    gap = 2.5 * gap  # overconfident
    sample = ev.LabelledSample(
        y=y,
        p=fake_probability(gap),
        gap=gap,
        rows=np.arange(3000),
        names=[f"img{i}.jpg" for i in range(3000)],
        groups=["gen_a" if i % 3 == 0 else "real" for i in range(3000)],
        n_rows=3010,
        model="m",
    )
    opts = ev.EvalOptions(
        target_precision=0.95, review_budget=100, fit_calibration="platt", n_boot=50
    )
    report = ev.evaluate_sample(sample, opts)
    assert report.chosen.criterion == "precision"
    assert report.calibration.ece_after < report.calibration.ece_before
    # Thresholds are chosen on the calibrated probabilities and translate back monotonically.
    raw = report.uncalibrated(report.chosen.threshold)
    p_cal = ev.calibrated_probs(report, sample)
    np.testing.assert_array_equal(p_cal >= report.chosen.threshold, sample.p >= raw)
    files = ev.write_eval_report(report, sample, str(tmp_path / "out"))
    names = {f.rsplit("/", 1)[-1] for f in files}
    assert names == {
        "report.md",
        "report.json",
        "scores.parquet",
        "hist.png",
        "roc.png",
        "pr.png",
        "reliability.png",
        "calibration.json",
    }
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["chosen"]["threshold"] == report.chosen.threshold
    assert data["threshold_scale"] == "calibrated"
    cal = Calibration.load(tmp_path / "out" / "calibration.json")
    assert cal == report.calibration.calibration and cal.model == "m"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "weighted avg" in md and "## Review band" in md and "--calibration" in md
    for png in ("hist.png", "roc.png", "pr.png", "reliability.png"):
        with Image.open(tmp_path / "out" / png) as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 300
    with pytest.raises(FileExistsError, match="--overwrite"):
        ev.write_eval_report(report, sample, str(tmp_path / "out"))
    assert not list((tmp_path / "out").glob("*.tmp*"))
    scores = pq.read_table(tmp_path / "out" / "scores.parquet").to_pydict()
    assert scores["label"][:3] == [schema.FAKE if v else schema.REAL for v in y[:3]]
    np.testing.assert_allclose(scores[schema.FAKE_PROB], sample.p, rtol=1e-6)
    np.testing.assert_allclose(scores["fake_prob_calibrated"], p_cal, rtol=1e-6)
    summary = ev.console_summary(report)
    assert "Classification report (Fake if fake_prob >= 0.5)" in summary
    assert f"--threshold {report.chosen.threshold:.9g}" in summary


def test_empty_sample_says_what_was_left_out():
    empty = ev.LabelledSample(*(np.zeros(0),) * 4, names=[], groups=[], n_rows=3, n_unlabelled=2)
    with pytest.raises(ev.EvaluationError, match="among 3 rows .2 without a label, 0 unscored"):
        ev.evaluate_sample(empty)


def test_uncalibrated_threshold_is_on_the_scale_the_sample_was_scored_on():
    """A threshold on the fitted calibration's scale, translated back to the scale of the
    scores as made (here with a calibration already), removes the same images."""
    y, gap, _ = synthetic(1500, seed=41)
    scored_with = Calibration(slope=0.8, intercept=0.3)
    sample = ev.LabelledSample(
        y=y, p=scored_with.apply(gap), gap=gap, rows=np.arange(1500),
        names=[None] * 1500, groups=[None] * 1500, n_rows=1500, calibration=scored_with,
    )  # fmt: skip
    opts = ev.EvalOptions(target_recall=0.9, fit_calibration="platt", n_boot=0)
    report = ev.evaluate_sample(sample, opts)
    t = report.chosen.threshold
    raw = report.uncalibrated(t)
    assert raw != pytest.approx(t, abs=1e-3)
    np.testing.assert_array_equal(ev.calibrated_probs(report, sample) >= t, sample.p >= raw)
    assert report.to_dict()["chosen"]["threshold_uncalibrated"] == raw
