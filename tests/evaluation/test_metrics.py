"""curate.evaluation.metrics: figures against independent computations, one-class samples,
bootstrap intervals; and the removal rule every figure uses (`p >= t`, as `deepfake_label`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from synthetic_scores import synthetic

from curate import evaluation as ev
from curate import schema
from curate.filtering import DecisionRule

# The model card's table, verbatim.
CARD_TABLE = """\
              precision    recall  f1-score   support

        Fake     0.9718    0.9155    0.9428     10000
        Real     0.9201    0.9734    0.9460      9999

    accuracy                         0.9444     19999
   macro avg     0.9459    0.9444    0.9444     19999
weighted avg     0.9459    0.9444    0.9444     19999"""


# -- independent reference computations ---------------------------------------------------------
def auc_by_pairs(y, p):
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def ap_by_thresholds(y, p):
    """Average precision as sum over distinct cuts of (R_k - R_{k-1}) * P_k."""
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(p.tolist()), reverse=True):
        r = p >= t
        recall = (r & (y == 1)).sum() / (y == 1).sum()
        precision = (r & (y == 1)).sum() / r.sum()
        total += (recall - prev_recall) * precision
        prev_recall = recall
    return total


def tpr_at_fpr_brute(y, p, max_fpr):
    best = 0.0
    for t in [*set(p.tolist()), math.inf]:
        r = p >= t
        if r[y == 0].mean() <= max_fpr:
            best = max(best, r[y == 1].mean())
    return best


def ece_by_loop(y, p, n_bins):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        # calibration_curve's bins: (lo, hi], the first one [0, hi]
        m = (p > lo) & (p <= hi) if b else (p <= hi)
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return total / len(y)


KNOWN_Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1])
# Ties across classes (0.7, 0.4) and within a class (0.9).
KNOWN_P = np.array([0.9, 0.9, 0.7, 0.4, 0.7, 0.4, 0.2, 0.05, 0.6, 0.95, 0.1, 0.4])


def test_metrics_match_independent_computations_with_ties():
    m = ev.compute_metrics(KNOWN_Y, KNOWN_P, threshold=0.5)
    assert m.roc_auc == pytest.approx(auc_by_pairs(KNOWN_Y, KNOWN_P))
    assert m.average_precision == pytest.approx(ap_by_thresholds(KNOWN_Y, KNOWN_P))
    assert m.tpr_at_1pct_fpr == pytest.approx(tpr_at_fpr_brute(KNOWN_Y, KNOWN_P, 0.01))
    assert m.tpr_at_5pct_fpr == pytest.approx(tpr_at_fpr_brute(KNOWN_Y, KNOWN_P, 0.05))
    assert m.ece == pytest.approx(ece_by_loop(KNOWN_Y, KNOWN_P, 15))
    pred = KNOWN_P >= 0.5
    tp = int((pred & (KNOWN_Y == 1)).sum())
    fp = int((pred & (KNOWN_Y == 0)).sum())
    fn = int((~pred & (KNOWN_Y == 1)).sum())
    tn = int((~pred & (KNOWN_Y == 0)).sum())
    assert m.confusion == [[tp, fn], [fp, tn]]
    assert m.accuracy == pytest.approx((tp + tn) / len(KNOWN_Y))
    assert m.fake_precision == pytest.approx(tp / (tp + fp))
    assert m.fake_recall == pytest.approx(tp / (tp + fn))
    assert m.real_removed == pytest.approx(fp / (fp + tn))
    assert m.brier == pytest.approx(np.mean((KNOWN_P - KNOWN_Y) ** 2))


def test_ece_matches_loop_on_random_scores_and_bin_edges():
    y, _, p = synthetic(500, seed=3)
    p = np.r_[p, [0.0, 1.0, 0.2, 0.4]]  # values exactly on bin edges (10 bins)
    y = np.r_[y, [0, 1, 1, 0]]
    for bins in (10, 15):
        assert ev.expected_calibration_error(y, p, bins) == pytest.approx(ece_by_loop(y, p, bins))


def test_all_tied_scores():
    y = np.array([1, 0, 1, 0, 1])
    m = ev.compute_metrics(y, np.full(5, 0.3))
    assert m.roc_auc == pytest.approx(0.5)
    assert m.tpr_at_1pct_fpr == 0.0  # the only cut with FPR <= 1 % removes nothing
    c = ev.choose_threshold(y, np.full(5, 0.3), recall=0.5)
    assert c.threshold is not None and c.threshold <= 0.3 and c.recall == 1.0


def test_card_layout_reproduced_exactly():
    """Predictions with the card's confusion matrix give the card's table, character for
    character (sklearn's classification_report, Fake first, 4 digits)."""
    y = np.r_[np.ones(10000), np.zeros(9999)].astype(int)
    p = np.r_[np.full(9155, 0.9), np.full(845, 0.1), np.full(266, 0.9), np.full(9733, 0.1)]
    m = ev.compute_metrics(y, p)
    assert m.report.rstrip() == CARD_TABLE
    assert m.accuracy == pytest.approx(0.94445, abs=1e-5)


@pytest.mark.parametrize("cls", [0, 1])
def test_single_class_gives_reasons_not_nan(cls):
    y = np.full(8, cls)
    p = np.linspace(0.05, 0.95, 8)
    m = ev.compute_metrics(y, p)
    assert m.roc_auc is None and m.average_precision is None and m.tpr_at_1pct_fpr is None
    name = "Fake" if cls else "Real"
    assert any(f"only {name} images" in n for n in m.notes)
    text = json.dumps(m.to_dict(), allow_nan=False)  # no NaN anywhere
    assert "NaN" not in text
    ci = ev.bootstrap_ci(y, p, n_boot=20)
    assert set(ci) == {"accuracy", "ece", "brier"}
    with pytest.raises(ev.EvaluationError, match=f"only {name}"):
        ev.fit_calibration(y, p)
    crit = "max_fpr" if cls else "recall"
    with pytest.raises(ev.EvaluationError, match="needs (Fake|Real) images"):
        ev.choose_threshold(y, p, **{crit: 0.5})


def test_empty_and_bad_inputs():
    with pytest.raises(ev.EvaluationError, match="no labelled"):
        ev.compute_metrics([], [])
    with pytest.raises(ValueError, match="NaN"):
        ev.compute_metrics([1, 0], [0.5, float("nan")])
    with pytest.raises(ValueError, match="exactly one"):
        ev.choose_threshold([1, 0], [0.9, 0.1], precision=0.9, recall=0.9)


def test_bootstrap_intervals_cover_and_are_reproducible():
    y, _, p = synthetic(600, seed=1)
    m = ev.compute_metrics(y, p)
    ci = ev.bootstrap_ci(y, p, n_boot=200, seed=7)
    assert ci == ev.bootstrap_ci(y, p, n_boot=200, seed=7)
    for key in ("accuracy", "roc_auc", "average_precision", "tpr_at_1pct_fpr", "ece", "brier"):
        lo, hi = ci[key]
        assert lo <= getattr(m, key) + 0.02 and getattr(m, key) - 0.02 <= hi, key
        assert hi > lo
    y2, _, p2 = synthetic(6000, seed=1)
    ci2 = ev.bootstrap_ci(y2, p2, n_boot=200, seed=7)
    width = lambda c: c["roc_auc"][1] - c["roc_auc"][0]  # noqa: E731
    assert width(ci2) < width(ci) / 2


def test_threshold_ci_matches_a_resampling_bootstrap():
    y, _, p = synthetic(3000, seed=50)
    t = 0.8
    fast = ev.threshold_ci(y, p, t, n_boot=4000, seed=1)
    rng = np.random.default_rng(2)
    fakes, reals = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rec, prec = [], []
    for _ in range(1000):
        f = rng.choice(fakes, len(fakes))
        r = rng.choice(reals, len(reals))
        tp, fp = (p[f] >= t).sum(), (p[r] >= t).sum()
        rec.append(tp / len(f))
        prec.append(tp / (tp + fp))
    for key, draws in (("recall", rec), ("precision", prec)):
        lo, hi = np.quantile(draws, [0.025, 0.975])
        assert fast[key][0] == pytest.approx(lo, abs=0.006)
        assert fast[key][1] == pytest.approx(hi, abs=0.006)
    assert ev.threshold_ci(np.ones(5), np.linspace(0, 1, 5), 0.5) == {}


def test_removal_agrees_with_deepfake_label_and_the_decision_rule():
    """At the default cut, what evaluation counts as removed is what `deepfake_label` calls
    Fake and what `DecisionRule()` removes, a score exactly at 0.5 included."""
    below = np.nextafter(np.float32(0.5), np.float32(0.0))
    above = np.nextafter(np.float32(0.5), np.float32(1.0))
    p32 = np.array([0.5, below, above, 0.0, 1.0, 0.25, 0.75], dtype=np.float32)
    p = p32.astype(np.float64)
    removed = ev.removed(p, schema.LABEL_THRESHOLD)
    assert removed.tolist() == [True, False, True, False, True, False, True]
    assert removed.tolist() == [schema.label_for(float(v)) == schema.FAKE for v in p32]
    assert removed.tolist() == (DecisionRule().decide_many(p) == "remove").tolist()
    # The card-style table predicts Fake exactly where `deepfake_label` says Fake.
    y = np.array([1, 1, 0, 0, 1, 0, 1])
    m = ev.compute_metrics(y, p)
    assert m.threshold == schema.LABEL_THRESHOLD == ev.EvalOptions().threshold
    tp = int((removed & (y == 1)).sum())
    fp = int((removed & (y == 0)).sum())
    assert m.confusion == [[tp, int(y.sum()) - tp], [fp, int((y == 0).sum()) - fp]]
