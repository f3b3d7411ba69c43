"""curate.evaluation.scores and stored: counts without labels, the decision of an eval report
on the scale of the file it is applied to, and the scoring settings a file records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic_scores import synthetic

from curate import evaluation as ev
from curate.calibration import Calibration, fake_probability
from curate.filtering import DecisionRule


def test_score_counts():
    rows = ev.score_counts([0.1, 0.5, 0.9, None if False else 0.95], thresholds=(0.5, 0.92))
    assert [(r["kept"], r["removed"]) for r in rows] == [(1, 3), (3, 1)]


def test_report_rule_from_eval_on_either_scale(tmp_path):
    """A threshold chosen on calibrated scores applies as is to a file scored with that
    calibration, and translated to files scored without it: same decisions either way."""
    y, gap, _ = synthetic(2000, seed=40)
    gap = 2.5 * gap
    sample = ev.LabelledSample(
        y=y, p=fake_probability(gap), gap=gap, rows=np.arange(2000),
        names=[None] * 2000, groups=[None] * 2000, n_rows=2000,
    )  # fmt: skip
    opts = ev.EvalOptions(target_recall=0.8, review_budget=50, fit_calibration="platt", n_boot=0)
    report = ev.evaluate_sample(sample, opts)
    ev.write_eval_report(report, sample, str(tmp_path))
    cal = report.calibration.calibration
    p_cal = cal.apply(gap).astype(np.float32)
    p_raw = sample.p.astype(np.float32)
    rule_cal, notes_cal = ev.rule_from_eval(tmp_path / "report.json", cal)
    rule_raw, notes_raw = ev.rule_from_eval(tmp_path / "report.json", None)
    assert rule_cal.threshold == report.chosen.threshold and not notes_cal
    assert rule_cal.review_band == (report.review.low, report.review.high)
    assert "equivalent threshold" in notes_raw[0]
    a = rule_cal.decide_many(p_cal)
    b = rule_raw.decide_many(p_raw)
    assert (a != b).sum() <= 2  # float32 rounding at the cut at most
    counts = ev.summarize_scores(np.r_[p_cal, np.nan], rule=rule_cal).rule
    assert counts["unscored"] == 1
    assert counts["remove"] == pytest.approx(report.review.expected.removed, abs=2)
    assert counts["review"] == pytest.approx(report.review.expected.review, abs=2)
    other = Calibration(slope=2.0, intercept=0.0)
    with pytest.raises(ValueError, match="scored with slope 2, intercept 0 but the eval"):
        ev.rule_from_eval(tmp_path / "report.json", other)
    with pytest.raises(ValueError, match="cannot read an eval report"):
        ev.rule_from_eval(tmp_path / "calibration.json", None)


def test_summary_counts_and_the_scoring_it_records():
    cal = Calibration(slope=0.5, intercept=0.1, method="platt", model="m")
    meta = {
        "curate.model": "m",
        "curate.revision": "abc",
        "curate.calibration": json.dumps(cal.to_dict()),
    }
    assert ev.stored_scoring(meta) == ev.StoredScoring("m", "abc", cal)
    assert ev.stored_scoring({"curate.revision": "null", "curate.calibration": "{bad"}) == (
        ev.StoredScoring()
    )
    p = np.array([0.2, 0.5, np.nan, 0.7, 0.9])
    rule = DecisionRule(threshold=0.6, review_band=(0.5, 0.8))
    rep = ev.summarize_scores(p, metadata=meta, thresholds=(0.5, 0.8), rule=rule)
    assert (rep.rows, rep.scored, rep.unscored, rep.model) == (5, 4, 1, "m")
    assert rep.calibration == cal.to_dict()
    assert [(c["kept"], c["removed"]) for c in rep.counts] == [(1, 3), (3, 1)]
    counts = {k: rep.rule[k] for k in ("keep", "review", "remove", "unscored")}
    assert counts == {"keep": 1, "review": 2, "remove": 1, "unscored": 1}
