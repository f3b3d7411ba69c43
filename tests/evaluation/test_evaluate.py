"""curate.evaluate: metrics against independent computations, calibration, thresholds, probe."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from conftest import SEED_CARD
from PIL import Image

from curate import evaluation as ev
from curate.calibration import Calibration
from curate.filtering import DecisionRule
from curate.scorer import DeepfakeScorer

# The model card's table, verbatim.
CARD_TABLE = """\
              precision    recall  f1-score   support

        Fake     0.9718    0.9155    0.9428     10000
        Real     0.9201    0.9734    0.9460      9999

    accuracy                         0.9444     19999
   macro avg     0.9459    0.9444    0.9444     19999
weighted avg     0.9459    0.9444    0.9444     19999"""


def synthetic(n: int, seed: int, prevalence: float = 0.4, sep: float = 2.0, scale: float = 1.5):
    """Labels and logit gaps of a detector whose classes overlap."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int8)
    gap = np.where(y == 1, rng.normal(sep, scale, n), rng.normal(-sep, scale, n))
    return y, gap, 1.0 / (1.0 + np.exp(-gap))


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
    if SEED_CARD.exists():
        assert CARD_TABLE in SEED_CARD.read_text()


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


def test_labels_by_name_map_and_errors():
    y, ok = ev.encode_labels(["Fake", "real", None, "FAKE", "", "Real"])
    assert y[ok].tolist() == [1, 0, 1, 0] and ok.tolist() == [1, 1, 0, 1, 0, 1]
    lm = ev.parse_label_map("1=Fake, 0=Real")
    y, ok = ev.encode_labels([1, 0, 0, 1], lm)
    assert y.tolist() == [1, 0, 0, 1] and ok.all()
    assert ev.parse_label_map(["midjourney=fake", "photo=Real"]) == {
        "midjourney": "Fake",
        "photo": "Real",
    }
    with pytest.raises(ev.EvaluationError, match="explicit map"):
        ev.encode_labels([0, 1])
    with pytest.raises(ev.EvaluationError, match="'cat' \\(2\\)"):
        ev.encode_labels(["fake", "cat", "cat"])
    with pytest.raises(ValueError, match="must be Fake or Real"):
        ev.parse_label_map("a=maybe")
    with pytest.raises(ValueError, match="VALUE=Fake"):
        ev.parse_label_map("nonsense")


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


# -- calibration ----------------------------------------------------------------------------------
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


def test_platt_fit_recovers_shift_and_scorer_applies_it_identically(tmp_path):
    rng = np.random.default_rng(1)
    true_gap = rng.normal(0.0, 2.0, 8000)
    y = (rng.random(8000) < 1 / (1 + np.exp(-(true_gap + 1.0)))).astype(int)
    gap = 2.0 * true_gap  # calibrated = sigmoid(0.5 * gap + 1)
    fit = ev.calibrate(y, gap, method="platt", model="some/model")
    cal = fit.calibration
    assert cal.slope == pytest.approx(0.5, rel=0.1)
    assert cal.intercept == pytest.approx(1.0, abs=0.15)
    assert fit.ece_after < fit.ece_before / 3
    # Temperature alone cannot fix a shifted prior: Platt beats it here.
    assert fit.ece_after < ev.calibrate(y, gap, method="temperature").ece_after
    path = tmp_path / "calibration.json"
    cal.save(path)
    assert Calibration.load(path) == cal and cal.model == "some/model"
    scorer = DeepfakeScorer("unused", calibration=str(path))  # loads nothing until it scores
    fake_logit = rng.normal(0, 3, 50).astype(np.float32)
    real_logit = rng.normal(0, 3, 50).astype(np.float32)
    np.testing.assert_allclose(
        scorer.fake_probability(fake_logit, real_logit),
        ev.apply_calibration(cal, fake_logit.astype(float) - real_logit),
        rtol=1e-6,
    )


def test_calibration_is_finite_on_separable_data():
    y = np.r_[np.ones(50), np.zeros(50)].astype(int)
    gap = np.r_[np.linspace(1, 5, 50), np.linspace(-5, -1, 50)]
    for method in ("temperature", "platt"):
        cal = ev.fit_calibration(y, gap, method)
        assert np.isfinite(cal.slope) and 0 < cal.slope < 1e3


def test_gap_from_prob_undoes_a_calibration():
    cal = Calibration(slope=0.4, intercept=0.3)
    gap = np.linspace(-8, 8, 33)
    p = ev.apply_calibration(cal, gap)
    np.testing.assert_allclose(ev.gap_from_prob(p, cal), gap, atol=1e-6)


# -- thresholds -----------------------------------------------------------------------------------
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


def test_score_counts():
    rows = ev.score_counts([0.1, 0.5, 0.9, None if False else 0.95], thresholds=(0.5, 0.92))
    assert [(r["kept"], r["removed"]) for r in rows] == [(1, 3), (3, 1)]


# -- robustness -----------------------------------------------------------------------------------
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


def test_robustness_probe_rescores_through_the_scorer(tiny_checkpoint, photo_paths, tmp_path):
    scorer = DeepfakeScorer(tiny_checkpoint, with_logits=True, batch_size=4)
    images = [*photo_paths, str(tmp_path / "missing.jpg")]
    y = np.array([1, 0] * 3)[: len(images)]
    base = np.array([np.nan if v is None else v for v in scorer.score_images(images)["fake_prob"]])
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
    gap = ev.gap_from_prob(base[ok])
    assert rows_c[0]["mean_fake_prob"] == pytest.approx(
        ev.apply_calibration(cal, gap).mean(), abs=1e-5
    )
    with pytest.raises(ValueError, match="unknown perturbation"):
        ev.robustness_probe(scorer, images, y, 0.5, perturbations=("sharpen",))


# -- reading labelled sources ---------------------------------------------------------------------
@pytest.fixture
def labelled_folder(tmp_path, photo_paths):
    import shutil

    root = tmp_path / "labelled"
    for i, p in enumerate(photo_paths):
        sub = root / ("fake/gen_a" if i % 2 else "real")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, sub)
    (root / "fake" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_collect_from_folder_and_from_scored_parquet(tiny_checkpoint, labelled_folder, tmp_path):
    from curate.io.parquet import write_parquet
    from curate.sources import resolve_source

    scorer = DeepfakeScorer(tiny_checkpoint, with_logits=True, batch_size=2)
    src = resolve_source(labelled_folder)
    seen = []
    s = ev.collect_labelled(src, "label", scorer=scorer, batch_size=3, progress=seen.append)
    assert sum(seen) == s.n_rows == len(s) + 1
    assert len(s.errors) == 1 and "broken.jpg" in s.errors[0]["image"]
    assert s.y.sum() == sum(1 for n in s.names if n.startswith("fake/"))
    assert {g for g in s.groups} == {"fake/gen_a", "real"}
    np.testing.assert_allclose(1 / (1 + np.exp(-s.gap)), s.p, atol=1e-6)

    # The same rows as a file written by `curate score` (with a calibration and no logits).
    cal = Calibration(slope=0.7, intercept=-0.4)
    scorer_c = DeepfakeScorer(tiny_checkpoint, batch_size=2, calibration=cal)
    batch = next(src.batches(100))
    batch.update(scorer_c.score_images(batch["image"]))
    batch["truth"] = [n["path"].split("/")[0] for n in batch["image"]]
    path = tmp_path / "scored.parquet"
    write_parquet([batch], path, metadata=scorer_c.metadata())
    s2 = ev.collect_labelled(resolve_source(str(path)), "truth")
    assert s2.model == tiny_checkpoint and s2.calibration == cal
    assert not s2.gap_from_logits
    np.testing.assert_allclose(s2.gap, s.gap, atol=1e-4)  # the raw gaps, calibration undone
    np.testing.assert_array_equal(s2.y, s.y)
    with pytest.raises(ev.EvaluationError, match="no label column 'nope'"):
        ev.collect_labelled(resolve_source(str(path)), "nope")


def test_evaluate_sample_and_write_report(tmp_path):
    from PIL import Image as PILImage

    y, gap, _ = synthetic(3000, seed=30)
    gap = 2.5 * gap  # overconfident
    sample = ev.LabelledSample(
        y=y,
        p=1 / (1 + np.exp(-gap)),
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
        with PILImage.open(tmp_path / "out" / png) as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 300
    with pytest.raises(FileExistsError, match="--overwrite"):
        ev.write_eval_report(report, sample, str(tmp_path / "out"))
    assert not list((tmp_path / "out").glob("*.tmp*"))


def test_report_rule_from_eval_on_either_scale(tmp_path):
    """A threshold chosen on calibrated scores applies as is to a file scored with that
    calibration, and translated to files scored without it: same decisions either way."""
    y, gap, _ = synthetic(2000, seed=40)
    gap = 2.5 * gap
    sample = ev.LabelledSample(
        y=y, p=ev.apply_calibration(None, gap), gap=gap, rows=np.arange(2000),
        names=[None] * 2000, groups=[None] * 2000, n_rows=2000,
    )  # fmt: skip
    opts = ev.EvalOptions(target_recall=0.8, review_budget=50, fit_calibration="platt", n_boot=0)
    report = ev.evaluate_sample(sample, opts)
    ev.write_eval_report(report, sample, str(tmp_path))
    cal = report.calibration.calibration
    p_cal = ev.apply_calibration(cal, gap).astype(np.float32)
    p_raw = sample.p.astype(np.float32)
    t_cal, band_cal, notes_cal = ev.rule_from_eval(str(tmp_path / "report.json"), cal.to_dict())
    t_raw, band_raw, notes_raw = ev.rule_from_eval(str(tmp_path / "report.json"), None)
    assert t_cal == report.chosen.threshold and not notes_cal
    assert "equivalent threshold" in notes_raw[0]
    a = DecisionRule(t_cal, band_cal).decide_many(p_cal)
    b = DecisionRule(t_raw, band_raw).decide_many(p_raw)
    assert (a != b).sum() <= 2  # float32 rounding at the cut at most
    counts = ev.summarize_scores(np.r_[p_cal, np.nan], rule=DecisionRule(t_cal, band_cal)).rule
    assert counts["unscored"] == 1
    assert counts["remove"] == pytest.approx(report.review.expected.removed, abs=2)
    assert counts["review"] == pytest.approx(report.review.expected.review, abs=2)
    other = Calibration(slope=2.0, intercept=0.0).to_dict()
    with pytest.raises(ValueError, match="scored with slope 2, intercept 0 but the eval"):
        ev.rule_from_eval(str(tmp_path / "report.json"), other)
    with pytest.raises(ValueError, match="cannot read an eval report"):
        ev.rule_from_eval(str(tmp_path / "calibration.json"), None)


def test_collect_reads_classlabel_names(tiny_checkpoint, photo_paths, tmp_path):
    """A datasets ClassLabel column (ids 0/1) is read by its names, whatever their order."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    from curate.sources import resolve_source

    labels = [i % 2 for i in range(len(photo_paths))]
    ds = Dataset.from_dict(
        {"image": photo_paths, "kind": labels},
        features=Features({"image": ImageFeature(), "kind": ClassLabel(names=["real", "fake"])}),
    )
    ds.save_to_disk(tmp_path / "ds")
    scorer = DeepfakeScorer(tiny_checkpoint, with_logits=True)
    s = ev.collect_labelled(resolve_source(str(tmp_path / "ds")), "kind", scorer=scorer)
    assert s.y.tolist() == labels  # id 1 is "fake"
    with pytest.raises(ev.EvaluationError, match="no labelled, scored images among 0 rows"):
        ev.evaluate_sample(ev.LabelledSample(*(np.zeros(0),) * 4, names=[], groups=[]))


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


def test_sample_from_columns_and_hardest_mistakes():
    labels = ["fake", "real", None, "real", "fake", "fake"]
    probs = [0.9, 0.8, 0.5, 0.1, None, 0.05]
    s = ev.sample_from_columns(labels, probs, names=[f"{i}.jpg" for i in range(6)])
    assert s.y.tolist() == [1, 0, 0, 1] and s.rows.tolist() == [0, 1, 3, 5]
    assert s.n_unlabelled == 1 and [e["row"] for e in s.errors] == [4]
    np.testing.assert_allclose(ev.apply_calibration(None, s.gap), s.p, atol=1e-6)
    hard = ev.hardest_mistakes(s, s.p, 0.5, k=1)
    assert [(h["label"], h["image"]) for h in hard] == [("Real", "1.jpg"), ("Fake", "5.jpg")]
    # Only mistakes: at 0.85 the Real at 0.8 is kept (right); the Fakes at 0.05 are wrong.
    hard = ev.hardest_mistakes(s, s.p, 0.85)
    assert [(h["label"], h["image"]) for h in hard] == [("Fake", "5.jpg")]
