"""Decision quality on a user's own labelled sample: metrics, calibration, thresholds,
robustness, and the reports of `curate eval` and `curate report`.

Everything works on two arrays: `y` (1 = Fake, 0 = Real, the class a curator removes is the
positive one) and `p` (the scorer's `fake_prob`), plus the logit gap `fake_logit - real_logit`
where a calibration is fitted. An image is removed when `fake_prob >= threshold`, as
`curate.filtering.DecisionRule` decides. One module per job:

- `labels`: ground-truth values -> Fake/Real, the `LabelledSample` of a source or of columns
- `metrics`: ROC-AUC, AP, TPR at FPR, ECE, the card-style table, bootstrap intervals
- `calibration`: fitting temperature / Platt scaling (`curate.calibration` applies it)
- `thresholds`: the threshold that meets a target, review bands, expected counts
- `robustness`: re-scoring after JPEG re-compression and downscaling
- `report`, `render`, `plots`: a whole evaluation, its text and figures, the report folder
- `scores`, `stored`: scored data without labels (`curate report`) and what made its scores

The names below are re-exported, so `from curate import evaluation as ev; ev.compute_metrics(y,
p)` works; composing a source, a scorer and a report is `curate.app.evaluate`.
"""

from __future__ import annotations

from curate.evaluation.base import EvaluationError, removed
from curate.evaluation.calibration import (
    CALIBRATION_METHODS,
    CalibrationFit,
    calibrate,
    fit_calibration,
    gap_from_prob,
)
from curate.evaluation.labels import (
    FAKE_NAMES,
    REAL_NAMES,
    LabelledSample,
    collect_labelled,
    encode_labels,
    parse_label_map,
    sample_from_columns,
)
from curate.evaluation.metrics import (
    Metrics,
    bootstrap_ci,
    compute_metrics,
    expected_calibration_error,
    group_breakdown,
    reliability_bins,
    threshold_ci,
)
from curate.evaluation.render import console_summary, render_markdown
from curate.evaluation.report import (
    EvalOptions,
    EvalReport,
    calibrated_probs,
    evaluate_sample,
    hardest_mistakes,
    write_eval_report,
)
from curate.evaluation.robustness import (
    DEFAULT_PERTURBATIONS,
    check_perturbations,
    gather_images,
    perturb,
    probe_indices,
    robustness_probe,
)
from curate.evaluation.scores import (
    CANDIDATE_THRESHOLDS,
    ScoreReport,
    read_scores,
    rule_from_eval,
    score_counts,
    summarize_scores,
    write_score_report,
)
from curate.evaluation.stored import StoredScoring, read_stored_scoring, stored_scoring
from curate.evaluation.thresholds import (
    Expected,
    ReviewBand,
    ThresholdChoice,
    choose_threshold,
    review_band,
    threshold_summary,
)

__all__ = [
    "CALIBRATION_METHODS",
    "CANDIDATE_THRESHOLDS",
    "DEFAULT_PERTURBATIONS",
    "FAKE_NAMES",
    "REAL_NAMES",
    "CalibrationFit",
    "EvalOptions",
    "EvalReport",
    "EvaluationError",
    "Expected",
    "LabelledSample",
    "Metrics",
    "ReviewBand",
    "ScoreReport",
    "StoredScoring",
    "ThresholdChoice",
    "bootstrap_ci",
    "calibrate",
    "calibrated_probs",
    "check_perturbations",
    "choose_threshold",
    "collect_labelled",
    "compute_metrics",
    "console_summary",
    "encode_labels",
    "evaluate_sample",
    "expected_calibration_error",
    "fit_calibration",
    "gap_from_prob",
    "gather_images",
    "group_breakdown",
    "hardest_mistakes",
    "parse_label_map",
    "perturb",
    "probe_indices",
    "read_scores",
    "read_stored_scoring",
    "reliability_bins",
    "removed",
    "render_markdown",
    "review_band",
    "robustness_probe",
    "rule_from_eval",
    "sample_from_columns",
    "score_counts",
    "stored_scoring",
    "summarize_scores",
    "threshold_ci",
    "threshold_summary",
    "write_eval_report",
    "write_score_report",
]
