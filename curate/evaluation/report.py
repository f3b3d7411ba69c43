"""A whole evaluation of a labelled sample, and the report folder it writes.

`evaluate_sample` turns a `LabelledSample` into an `EvalReport` (metrics, intervals, an
optional calibration fit, thresholds, review band, groups, confident mistakes);
`write_eval_report` writes report.md, report.json, scores.parquet, the plots and
calibration.json. Composing a source, a scorer and the robustness probe is `curate.app.evaluate`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from curate import schema
from curate.calibration import Calibration, fake_probability
from curate.evaluation.base import EvaluationError, one_class_reason, removed
from curate.evaluation.calibration import CalibrationFit, calibrate, gap_from_prob
from curate.evaluation.labels import LabelledSample
from curate.evaluation.metrics import (
    Metrics,
    bootstrap_ci,
    compute_metrics,
    expected_calibration_error,
    group_breakdown,
    threshold_ci,
)
from curate.evaluation.stored import StoredScoring
from curate.evaluation.thresholds import (
    ReviewBand,
    ThresholdChoice,
    choose_threshold,
    review_band,
    threshold_summary,
)


@dataclass
class EvalOptions:
    """What to measure and decide (the options of `curate eval` that are not about reading or
    scoring the source)."""

    threshold: float = schema.LABEL_THRESHOLD  # the cut the card-style table is computed at
    target_precision: float | None = None
    target_recall: float | None = None
    max_fpr: float | None = None
    review_budget: float | None = None  # images (or a share, below 1) to review by hand
    prevalence: float | None = None  # share of Fakes in the data to curate (default: sample's)
    dataset_size: int | None = None  # images in the data to curate (default: sample size)
    confidence: float | None = None  # conservative (Clopper-Pearson) threshold choice
    fit_calibration: str | None = None  # "temperature" | "platt"
    calibration_holdout: float = 0.5
    n_boot: int = 1000
    n_bins: int = 15
    seed: int = 0


# Reported when no target is given: what a curator usually asks first.
_DEFAULT_TARGETS = (("precision", 0.99), ("recall", 0.95), ("max_fpr", 0.01))


@dataclass
class EvalReport:
    """Everything an evaluation found; `to_dict` is report.json."""

    source: str
    model: str | list[str] | None  # the model (an ensemble: its members) that made the scores
    options: EvalOptions
    counts: dict[str, int]
    metrics: Metrics
    ci: dict[str, tuple[float, float]]
    calibration: CalibrationFit | None
    thresholds: list[ThresholdChoice]
    chosen: ThresholdChoice
    review: ReviewBand | None
    groups: list[dict[str, Any]]
    scored_with: Calibration | None = None  # the calibration the scores were made with
    chosen_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    hardest: list[dict[str, Any]] = field(default_factory=list)
    robustness: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    scored_by: str | None = None  # the model in words: an ensemble and its combine, a head
    combine: str | None = None  # an ensemble's
    head: str | None = None  # an adapted head's folder
    # An ensemble's members measured alone on the same rows: model, roc_auc, average_precision.
    members: list[dict[str, Any]] = field(default_factory=list)
    robustness_scored_by: str | None = None  # what scored the robustness probe, in words

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calibration"] = self.calibration.to_dict() if self.calibration else None
        d["ci"] = {k: list(v) for k, v in self.ci.items()}
        d["chosen_ci"] = {k: list(v) for k, v in self.chosen_ci.items()}
        d["threshold_scale"] = "calibrated" if self.calibrated else "as scored"
        for t in [d["chosen"], *d["thresholds"]]:
            t["threshold_uncalibrated"] = self.uncalibrated(t["threshold"])
        if d["review"]:
            d["review"]["low_uncalibrated"] = self.uncalibrated(self.review.low)
            d["review"]["high_uncalibrated"] = self.uncalibrated(self.review.high)
        return d

    def uncalibrated(self, t: float | None) -> float | None:
        """A threshold on the fitted calibration's probabilities, on the scores as they were."""
        if t is None or not self.calibrated:
            return t
        if t <= 0.0 or t >= 1.0:
            return t
        gap = gap_from_prob([t], self.calibration.calibration)
        return float(fake_probability(gap, self.scored_with)[0])


def evaluate_sample(sample: LabelledSample, options: EvalOptions | None = None) -> EvalReport:
    """Metrics, bootstrap intervals, optional calibration fit, thresholds, review band and
    group breakdown for a labelled sample. Thresholds are chosen on the probabilities the user
    will filter on: calibrated ones when a calibration is fitted here."""
    o = options or EvalOptions()
    y, p = sample.y, sample.p
    if len(sample) == 0:
        raise EvaluationError(
            f"no labelled, scored images among {sample.n_rows} rows "
            f"({sample.n_unlabelled} without a label, {len(sample.errors)} unscored)"
        )
    notes: list[str] = []
    metrics = compute_metrics(y, p, o.threshold, o.n_bins)
    notes += metrics.notes
    ci = bootstrap_ci(y, p, o.threshold, n_boot=o.n_boot, seed=o.seed, n_bins=o.n_bins)
    fit = None
    p_use = p
    if o.fit_calibration:
        if not sample.gap_from_logits:
            notes.append(
                f"the source has no {schema.FAKE_LOGIT}/{schema.REAL_LOGIT}: the calibration was "
                f"fitted on gaps recovered from float32 {schema.FAKE_PROB} (clipped at about +-16)"
            )
        fit = calibrate(
            y,
            sample.gap,
            p,
            method=o.fit_calibration,
            test_fraction=o.calibration_holdout,
            seed=o.seed,
            model=sample.model,
            n_bins=o.n_bins,
        )
        if fit.calibration.slope <= 0:
            notes.append(
                "the fitted calibration has a negative slope: on this sample the detector ranks "
                "Real images above Fake ones; do not use it"
            )
        p_use = fit.calibration.apply(sample.gap)
    common = dict(prevalence=o.prevalence, dataset_size=o.dataset_size)
    targets = [
        (k, v)
        for k, v in (
            ("precision", o.target_precision),
            ("recall", o.target_recall),
            ("max_fpr", o.max_fpr),
        )
        if v is not None
    ]
    explicit = bool(targets)
    choices: list[ThresholdChoice] = []
    for crit, value in targets or _DEFAULT_TARGETS:
        try:
            choices.append(
                choose_threshold(y, p_use, **{crit: value}, confidence=o.confidence, **common)
            )
        except EvaluationError as exc:
            notes.append(str(exc))
    fixed = threshold_summary(y, p_use, o.threshold, **common)
    reached = [c for c in choices if c.threshold is not None]
    chosen = reached[0] if explicit and reached else fixed  # either way, it has a threshold
    if explicit and not reached:
        notes.append(f"no target could be met; decisions below use the threshold {o.threshold:g}")
    notes += [c.note for c in choices if c.note]
    band = None
    if o.review_budget is not None:
        band = review_band(y, p_use, chosen.threshold, o.review_budget, **common)
        if band.low == band.high:
            notes.append("the review budget is too small to hold even one group of tied scores")
    scoring = sample.scoring or StoredScoring(sample.model, sample.revision, sample.calibration)
    return EvalReport(
        source="",
        model=sample.model,
        scored_by=scoring.describe(),
        combine=scoring.combine,
        head=scoring.head,
        members=member_figures(sample, scoring),
        options=o,
        counts={
            "rows": sample.n_rows,
            "labelled": len(sample),
            "unlabelled": sample.n_unlabelled,
            "unscored": len(sample.errors),
            "fake": int(y.sum()),
            "real": int(len(y) - y.sum()),
        },
        metrics=metrics,
        ci=ci,
        calibration=fit,
        thresholds=[fixed, *choices],
        chosen=chosen,
        review=band,
        groups=group_breakdown(sample.groups, y, p_use, chosen.threshold),
        chosen_ci=threshold_ci(
            y, p_use, chosen.threshold, prevalence=o.prevalence, n_boot=o.n_boot, seed=o.seed
        ),
        hardest=hardest_mistakes(sample, p_use, chosen.threshold),
        scored_with=sample.calibration,
        notes=notes,
    )


def member_figures(sample: LabelledSample, scoring: StoredScoring) -> list[dict[str, Any]]:
    """Each ensemble member's ROC-AUC and AP on the sample's rows, from the scores'
    `member_fake_probs` (none without them). Members are named as the scores record them."""
    if sample.member_p is None:
        return []
    k = sample.member_p.shape[1]
    names = scoring.members if scoring.members and len(scoring.members) == k else None
    out = []
    for j in range(k):
        m = compute_metrics(sample.y, sample.member_p[:, j])
        out.append(
            {
                "model": names[j] if names else f"member {j + 1}",
                "roc_auc": m.roc_auc,
                "average_precision": m.average_precision,
            }
        )
    return out


def hardest_mistakes(
    sample: LabelledSample, p: np.ndarray, threshold: float = schema.LABEL_THRESHOLD, k: int = 10
) -> list[dict[str, Any]]:
    """Up to `k` Real images the threshold removes, scored most Fake first, and up to `k`
    Fake images it keeps, scored most Real first: where label noise and the detector's blind
    spots show first."""
    out = []
    r = removed(p, threshold)
    for cls, name, order, wrong in ((0, schema.REAL, -p, r), (1, schema.FAKE, p, ~r)):
        idx = np.flatnonzero((sample.y == cls) & wrong)
        for i in idx[np.argsort(order[idx], kind="stable")][:k]:
            out.append(
                {
                    "label": name,
                    schema.FAKE_PROB: float(p[i]),
                    "image": sample.names[i],
                    "row": int(sample.rows[i]),
                    "group": sample.groups[i],
                }
            )
    return out


def calibrated_probs(report: EvalReport, sample: LabelledSample) -> np.ndarray:
    """The probabilities thresholds in `report` apply to."""
    if report.calibration is None:
        return sample.p
    return report.calibration.calibration.apply(sample.gap)


def write_eval_report(
    report: EvalReport, sample: LabelledSample, out_dir: str, *, overwrite: bool = False
) -> list[str]:
    """Write report.md, report.json, scores.parquet (one row per labelled image, no pixels),
    the plots (hist.png, roc.png, pr.png, reliability.png, robustness.png after a probe) and
    calibration.json when one was fitted. Returns the paths written."""
    from curate.evaluation import plots
    from curate.evaluation.render import render_markdown, report_json
    from curate.io.atomic import atomic_write_text
    from curate.io.parquet import write_parquet

    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "report.json")
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a report; pass --overwrite to replace it")
    y, p = sample.y, sample.p
    p_use = calibrated_probs(report, sample)
    written: list[str] = []

    def path(name: str) -> str:
        written.append(name)
        return os.path.join(out_dir, name)

    cal_file = None
    if report.calibration:
        cal_file = path("calibration.json")
        report.calibration.calibration.save(cal_file)
    lines = {"threshold": report.chosen.threshold} if report.chosen.threshold is not None else {}
    if report.review and report.review.low < report.review.high:
        lines = {"review from": report.review.low, "remove from": report.review.high}
    scale = f"calibrated {schema.FAKE_PROB}" if report.calibrated else schema.FAKE_PROB
    plots.score_histogram(p_use, path("hist.png"), y=y, thresholds=lines, title=f"{scale} by class")
    if not one_class_reason(y):
        picked = [c for c in report.thresholds if c.threshold is not None]
        names = [f"{c.criterion} {c.threshold if c.target is None else c.target:g}" for c in picked]
        roc_marks = {n: (c.fpr, c.recall) for n, c in zip(names, picked, strict=True)}
        pr_marks = {
            n: (c.recall, c.precision)
            for n, c in zip(names, picked, strict=True)
            if c.precision is not None
        }
        plots.roc_plot(y, p, path("roc.png"), marks=roc_marks)
        plots.pr_plot(y, p_use, path("pr.png"), marks=pr_marks)
    curves = {"as scored": p}
    eces = {"as scored": report.metrics.ece}
    if report.calibration:
        curves["calibrated"] = p_use
        eces["calibrated"] = expected_calibration_error(y, p_use, report.options.n_bins)
    plots.reliability_plot(
        y, curves, path("reliability.png"), n_bins=report.options.n_bins, eces=eces
    )
    if report.robustness:
        plots.robustness_plot(report.robustness, path("robustness.png"))
    write_parquet(
        [
            {
                "row": sample.rows.tolist(),
                "image": list(sample.names),
                "group": list(sample.groups),
                "label": [schema.FAKE if v else schema.REAL for v in y],
                schema.FAKE_PROB: p.tolist(),
                "logit_gap": sample.gap.tolist(),
                "fake_prob_calibrated": p_use.tolist(),
            }
        ],
        path("scores.parquet"),
        image_column=None,
        overwrite=True,
    )
    report.files = sorted([*written, "report.md", "report.json"])
    atomic_write_text(path("report.md"), render_markdown(report, cal_file))
    atomic_write_text(target, report_json(report.to_dict()))
    written.append("report.json")
    return [os.path.join(out_dir, w) for w in written]
