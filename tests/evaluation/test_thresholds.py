"""curate.evaluation.thresholds: targets met on held-out data, optimal choices checked by
brute force, expected counts equal to `DecisionRule`'s outcomes, review bands."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_scores import synthetic

from curate import evaluation as ev
from curate.filtering import DecisionRule


def _rates(y, p, t):
    r = DecisionRule(threshold=t).decide_many(p) == "remove"
    return r[y == 1].sum() / max(r.sum(), 1), r[y == 1].mean(), r[y == 0].mean(), r


def test_threshold_targets_hold_on_held_out_data():
    y, _, p = synthetic(20000, seed=10)
    yt, _, pt = synthetic(20000, seed=11)
    c = ev.choose_threshold(y, p, precision=0.97)
    prec, _, _, _ = _rates(yt, pt, c.threshold)
    assert c.precision >= 0.97 and prec >= 0.97 - 0.006
    c = ev.choose_threshold(y, p, precision=0.97, confidence=0.95)
    prec_c, _, _, _ = _rates(yt, pt, c.threshold)
    assert prec_c >= 0.97
    c = ev.choose_threshold(y, p, recall=0.9)
    _, rec, _, _ = _rates(yt, pt, c.threshold)
    assert c.recall >= 0.9 and rec >= 0.9 - 0.01
    c = ev.choose_threshold(y, p, max_fpr=0.02)
    _, _, fpr, _ = _rates(yt, pt, c.threshold)
    assert c.fpr <= 0.02 and fpr <= 0.02 + 0.005


def test_threshold_is_the_best_that_meets_the_target():
    """No threshold removing more Fakes meets the precision target (checked by brute force)."""
    y, _, p = synthetic(400, seed=4)
    c = ev.choose_threshold(y, p, precision=0.95)
    for t in np.unique(p):
        r = p >= t
        if r[y == 1].mean() > c.recall:
            assert (y[r] == 1).mean() < 0.95
    c = ev.choose_threshold(y, p, max_fpr=0.05)
    for t in np.unique(p):
        r = p >= t
        if r[y == 1].mean() > c.recall:
            assert r[y == 0].mean() > 0.05


def test_prevalence_adjusts_precision_for_the_target_data():
    # Labelled sample is balanced; the data to curate holds 10 % Fakes.
    y, _, p = synthetic(20000, seed=20, prevalence=0.5)
    yt, _, pt = synthetic(200000, seed=21, prevalence=0.1)
    naive = ev.choose_threshold(y, p, precision=0.95)
    adjusted = ev.choose_threshold(y, p, precision=0.95, prevalence=0.1, dataset_size=200000)
    assert adjusted.threshold > naive.threshold
    assert _rates(yt, pt, naive.threshold)[0] < 0.9  # the unadjusted cut misses badly
    prec, _, _, removed = _rates(yt, pt, adjusted.threshold)
    assert prec >= 0.95 - 0.03
    assert adjusted.expected.removed == pytest.approx(removed.sum(), rel=0.1)


def test_precision_target_over_many_labelled_samples():
    """Over independent labelled samples, the point choice meets the target on average and
    the confident choice (95 %) meets it almost always, on a large held-out set at the data's
    own prevalence."""
    yt, _, pt = synthetic(200000, seed=999, prevalence=0.1)
    point, confident = [], []
    for seed in range(20):
        y, _, p = synthetic(20000, seed=100 + seed, prevalence=0.5)
        for out, conf in ((point, None), (confident, 0.95)):
            c = ev.choose_threshold(y, p, precision=0.95, prevalence=0.1, confidence=conf)
            out.append(_rates(yt, pt, c.threshold)[0])
    assert np.mean(point) == pytest.approx(0.95, abs=0.005)
    assert np.mean(np.array(confident) >= 0.95) >= 0.9
    assert min(confident) >= 0.94


def test_expected_counts_match_the_decision_rule_on_the_sample():
    y, _, p = synthetic(3000, seed=5)
    for kw in ({"precision": 0.95}, {"recall": 0.8}, {"max_fpr": 0.03}):
        c = ev.choose_threshold(y, p, **kw)
        out = DecisionRule(threshold=c.threshold).decide_many(p)
        assert c.expected.removed == pytest.approx((out == "remove").sum())
        assert c.expected.kept == pytest.approx((out == "keep").sum())
        assert c.expected.real_removed == pytest.approx(((out == "remove") & (y == 0)).sum())
        assert c.expected.fake_kept == pytest.approx(((out == "keep") & (y == 1)).sum())


def test_unreachable_target_says_so():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.2, 0.9, 0.3, 0.8])  # every Real above every Fake
    c = ev.choose_threshold(y, p, precision=0.9)
    assert c.threshold is None and "no threshold reaches precision 0.9" in c.note


def _band_brute_force(y, p, t, cap):
    """Best errors caught over every band [lo, hi) around t holding at most `cap` images."""
    vals = np.unique(np.r_[p, 0.0, 1.0])
    best = 0
    edges = [*vals, 1.0 + 1e-9]
    for lo in edges:
        for hi in edges:
            if not lo <= t <= hi:
                continue
            band = (p >= lo) & (p < hi)
            if band.sum() > cap:
                continue
            wrong = np.where(p >= t, y == 0, y == 1)
            best = max(best, int((band & wrong).sum()))
    return best


def test_review_band_is_optimal_and_matches_the_decision_rule():
    y, _, p = synthetic(120, seed=6)
    p = np.round(p, 2)  # plenty of ties
    t = ev.choose_threshold(y, p, precision=0.9).threshold
    for cap in (0, 5, 17, 40):
        b = ev.review_band(y, p, t, cap)
        assert b.errors_caught == pytest.approx(_band_brute_force(y, p, t, cap))
        if b.low < b.high:
            out = DecisionRule(threshold=t, review_band=(b.low, b.high)).decide_many(p)
            assert (out == "review").sum() <= cap
            assert b.expected.review == pytest.approx((out == "review").sum())
            assert b.expected.removed == pytest.approx((out == "remove").sum())
            assert b.expected.kept == pytest.approx((out == "keep").sum())


def test_review_budget_as_share_of_a_larger_dataset():
    y, _, p = synthetic(2000, seed=8)
    b = ev.review_band(y, p, 0.5, 0.05, dataset_size=100_000)
    assert b.budget == pytest.approx(5000)
    assert b.expected.review <= 5000 + 1e-6 and b.expected.review > 4000
