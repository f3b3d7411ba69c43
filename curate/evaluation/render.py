"""The text of reports: the console summary and Markdown of an evaluation, the Markdown of a
score report, and the JSON both write."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from curate import schema

if TYPE_CHECKING:
    from curate.evaluation.report import EvalReport
    from curate.evaluation.scores import ScoreReport

_SCORE = schema.FAKE_PROB  # the score every report is about


def _f(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _thr(v: float | None) -> str:
    return "none" if v is None else f"{v:.6g}"


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _headline(report: EvalReport) -> str:
    """One line of the figures a curator reads first."""
    m = report.metrics
    return (
        f"ROC-AUC {_f(m.roc_auc)}  AP {_f(m.average_precision)}  "
        f"TPR@1%FPR {_f(m.tpr_at_1pct_fpr)}  TPR@5%FPR {_f(m.tpr_at_5pct_fpr)}  ECE {_f(m.ece)}"
    )


def _member_rows(report: EvalReport) -> list[list[str]]:
    """The ensemble and each of its members alone: model, ROC-AUC, AP (none for one model)."""
    if not report.members:
        return []
    m = report.metrics
    rows = [[f"ensemble ({report.combine or 'mean'})", _f(m.roc_auc), _f(m.average_precision)]]
    for r in report.members:
        rows.append([r["model"], _f(r["roc_auc"]), _f(r["average_precision"])])
    return rows


def _threshold_rows(report: EvalReport) -> list[list[str]]:
    rows = []
    for c in report.thresholds:
        e = c.expected
        target = "" if c.target is None else f"{c.target:g}"
        rows.append(
            [
                c.criterion + (" *" if c is report.chosen else ""),
                target,
                _thr(c.threshold),
                _f(c.precision),
                _f(c.recall),
                _f(c.fpr),
                _count(e.kept) if e else "",
                _count(e.removed) if e else "",
                _count(e.real_removed) if e else "",
                _count(e.fake_kept) if e else "",
            ]
        )
    return rows


_THRESHOLD_HEADER = [
    "criterion",
    "target",
    "threshold",
    "precision",
    "recall",
    "FPR",
    "kept",
    "removed",
    "Real removed",
    "Fake kept",
]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _filter_args(report: EvalReport) -> str:
    """`curate filter` options for the chosen decision (9 digits: exact for float32 scores)."""
    if report.chosen.threshold is None:
        return ""
    args = f"--threshold {report.chosen.threshold:.9g}"
    if report.review and report.review.low < report.review.high:
        args += f" --review-band {report.review.low:.9g} {report.review.high:.9g}"
    return args


def _chosen_ci_text(report: EvalReport) -> str:
    c, ci = report.chosen, report.chosen_ci
    parts = []
    for key, value in (("precision", c.precision), ("recall", c.recall), ("FPR", c.fpr)):
        lo_hi = ci.get(key.lower())
        rng = f" ({lo_hi[0]:.4f}-{lo_hi[1]:.4f})" if lo_hi else ""
        parts.append(f"{key} {_f(value)}{rng}")
    return ", ".join(parts) + " (95 % bootstrap intervals)"


def console_summary(report: EvalReport) -> str:
    """What `curate eval` prints: the card-style table, the headline figures, the thresholds."""
    m = report.metrics
    c = report.counts
    out = [
        f"{c['labelled']} labelled images ({c['fake']} Fake, {c['real']} Real); "
        f"{c['unscored']} unscored, {c['unlabelled']} unlabelled",
        f"Classification report (Fake if {_SCORE} >= {m.threshold:g}):",
        m.report.rstrip(),
        "",
        _headline(report),
    ]
    if report.members:
        out.append("Ensemble members alone (same rows):")
        rows = _member_rows(report)
        width = max(len(r[0]) for r in rows)
        out += [f"  {r[0].ljust(width)}  ROC-AUC {r[1]}  AP {r[2]}" for r in rows]
    if report.calibration:
        f = report.calibration
        out.append(
            f"Calibration ({f.calibration.method}, slope {f.calibration.slope:.4g}, intercept "
            f"{f.calibration.intercept:.4g}): held-out ECE {f.ece_before:.4f} -> {f.ece_after:.4f}"
        )
    scale = f"calibrated {_SCORE}" if report.calibrated else _SCORE
    out.append(f"Thresholds (remove when {scale} >= threshold; * = chosen):")
    widths = [
        max(len(r[i]) for r in [_THRESHOLD_HEADER, *_threshold_rows(report)]) for i in range(10)
    ]
    for r in [_THRESHOLD_HEADER, *_threshold_rows(report)]:
        out.append("  " + "  ".join(x.rjust(w) for x, w in zip(r, widths, strict=True)))
    if report.chosen_ci:
        out.append(f"Chosen threshold {_thr(report.chosen.threshold)}: {_chosen_ci_text(report)}")
    if report.review:
        b = report.review
        out.append(
            f"Review band [{_thr(b.low)}, {_thr(b.high)}): ~{_count(b.expected.review)} images "
            f"to review, catching ~{_count(b.errors_caught)} wrong decisions"
        )
    out += [f"note: {n}" for n in report.notes]
    if report.chosen.threshold is not None:
        out.append(
            f"Filter with: curate filter SCORED.parquet -o KEPT.parquet {_filter_args(report)}"
        )
    return "\n".join(out)


def render_markdown(report: EvalReport, calibration_file: str | None = None) -> str:
    """The Markdown report written beside the plots."""
    m, o, c = report.metrics, report.options, report.counts
    lines = [
        "# Detector evaluation",
        "",
        f"- source: `{report.source}`",
        f"- model: `{report.scored_by or report.model}`",
        f"- images: {c['rows']} rows, {c['labelled']} labelled and scored "
        f"({c['fake']} Fake, {c['real']} Real), {c['unscored']} unscored, "
        f"{c['unlabelled']} without a label",
    ]
    if report.scored_with:
        sw = report.scored_with
        lines.append(
            f"- scored with calibration: slope {sw.slope:.6g}, intercept {sw.intercept:.6g}"
        )
    lines += [
        "",
        f"## Classification report (Fake if {_SCORE} >= {m.threshold:g})",
        "",
        "```",
        m.report.rstrip(),
        "```",
        "",
        "Confusion matrix (rows: true class, columns: predicted):",
        "",
        _md_table(
            ["", "pred Fake", "pred Real"], [["Fake", *m.confusion[0]], ["Real", *m.confusion[1]]]
        ),
        "",
        "## Headline figures",
        "",
    ]
    conf = "95 % CI (stratified bootstrap, " + f"{o.n_boot} resamples)"
    rows = []
    for key, label in (
        ("accuracy", "accuracy"),
        ("roc_auc", "ROC-AUC"),
        ("average_precision", "average precision"),
        ("tpr_at_1pct_fpr", "TPR at 1 % FPR"),
        ("tpr_at_5pct_fpr", "TPR at 5 % FPR"),
        ("ece", f"ECE ({o.n_bins} bins)"),
        ("brier", "Brier score"),
    ):
        ci = report.ci.get(key)
        rows.append(
            [label, _f(getattr(m, key)), "" if ci is None else f"{ci[0]:.4f} - {ci[1]:.4f}"]
        )
    lines += [_md_table(["figure", "value", conf], rows), ""]
    if report.members:
        lines += [
            "## Ensemble members",
            "",
            "Each member's own score (before combining and calibration) on the same rows:",
            "",
            _md_table(["scorer", "ROC-AUC", "average precision"], _member_rows(report)),
            "",
        ]
    if report.calibration:
        f = report.calibration
        cal = f.calibration
        lines += [
            f"## Calibration ({cal.method})",
            "",
            f"`fake_prob = sigmoid({cal.slope:.6g} * (fake_logit - real_logit) + "
            f"{cal.intercept:.6g})`, fitted on {f.n_fit} images, "
            + (
                f"measured on {f.n_test} held-out images:"
                if o.calibration_holdout > 0
                else "measured on the same images (no hold-out):"
            ),
            "",
            _md_table(
                ["", "before", "after"],
                [
                    ["ECE", _f(f.ece_before), _f(f.ece_after)],
                    ["Brier score", _f(f.brier_before), _f(f.brier_after)],
                    ["log loss", _f(f.log_loss_before), _f(f.log_loss_after)],
                ],
            ),
            "",
        ]
    scale = f"calibrated `{_SCORE}`" if report.calibrated else f"`{_SCORE}`"
    prev = report.chosen.expected.prevalence if report.chosen.expected else None
    size = report.chosen.expected.dataset_size if report.chosen.expected else None
    lines += [
        "## Thresholds",
        "",
        f"Remove when {scale} >= threshold. Precision is the share of Fake images among those "
        f"removed at a Fake share of {_f(prev)}; counts are expected out of {size} images"
        + (f", with {o.confidence:g} confidence bounds" if o.confidence else "")
        + ". `*` marks the threshold used below.",
        "",
        _md_table(_THRESHOLD_HEADER, _threshold_rows(report)),
        "",
    ]
    if report.chosen_ci:
        lines += [f"At the chosen threshold: {_chosen_ci_text(report)}.", ""]
    if report.review:
        b = report.review
        e = b.expected
        lines += [
            "## Review band",
            "",
            f"Review by hand when {_thr(b.low)} <= {scale} < {_thr(b.high)} (budget "
            f"{_count(b.budget)} images): expected {_count(e.kept)} kept, {_count(e.review)} to "
            f"review, {_count(e.removed)} removed; the band catches ~{_count(b.errors_caught)} "
            f"wrong automatic decisions, ~{_count(b.errors_left)} remain.",
            "",
        ]
    if report.groups:
        lines += [
            f"## By group (removed at threshold {_thr(report.chosen.threshold)})",
            "",
            _md_table(
                ["group", "images", "Fake", "Real", "removed share", "mean fake_prob"],
                [
                    [
                        g["group"],
                        g["n"],
                        g["fake"],
                        g["real"],
                        _f(g["removed_share"]),
                        _f(g["mean_fake_prob"]),
                    ]
                    for g in report.groups
                ],
            ),
            "",
        ]
    if report.robustness:
        lines += [
            f"## Robustness (threshold {_thr(report.chosen.threshold)})",
            "",
            *(
                [f"Scored with `{report.robustness_scored_by}`.", ""]
                if report.robustness_scored_by
                else []
            ),
            _md_table(
                [
                    "perturbation",
                    "images",
                    "ROC-AUC",
                    "d AUC",
                    "precision",
                    "d precision",
                    "recall",
                    "d recall",
                    "FPR",
                ],
                [
                    [
                        r["perturbation"],
                        r["n"],
                        _f(r["roc_auc"]),
                        _f(r.get("delta_roc_auc"), 4) if "delta_roc_auc" in r else "",
                        _f(r["precision"]),
                        _f(r.get("delta_precision")) if "delta_precision" in r else "",
                        _f(r["recall"]),
                        _f(r.get("delta_recall")) if "delta_recall" in r else "",
                        _f(r["fpr"]),
                    ]
                    for r in report.robustness
                ],
            ),
            "",
        ]
    if report.hardest:
        lines += [
            "## Most confident mistakes",
            "",
            f"At threshold {_thr(report.chosen.threshold)}: Real images removed, scored most "
            "Fake first, and Fake images kept, scored most Real first. Check them for label "
            "errors and for what the detector misses.",
            "",
            _md_table(
                ["label", scale, "image", "group"],
                [
                    [
                        h["label"],
                        _f(h[_SCORE]),
                        f"`{h['image']}`" if h["image"] else h["row"],
                        h["group"] or "",
                    ]
                    for h in report.hardest
                ],
            ),
            "",
        ]
    use = report.chosen
    lines += ["## Use it", ""]
    if use.threshold is not None:
        cal = f" --calibration {calibration_file}" if calibration_file else ""
        lines += [
            "```bash",
            f"curate score SOURCE -o scored.parquet{cal}",
            f"curate filter scored.parquet -o kept.parquet {_filter_args(report)}",
            "```",
            "",
        ]
        if report.calibrated:
            lines += [
                f"On scores made without this calibration the same cut is "
                f"{_thr(report.uncalibrated(use.threshold))}.",
                "",
            ]
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    if report.files:
        lines += ["## Files", "", *[f"- `{f}`" for f in report.files], ""]
    return "\n".join(lines)


def report_json(data: Any) -> str:
    """`data` as indented JSON; numpy values become plain numbers, and a NaN is an error."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"cannot write {type(o).__name__} as JSON")

    # allow_nan=False: a NaN that slipped through fails loudly instead of writing invalid JSON.
    return json.dumps(data, indent=2, default=default, allow_nan=False) + "\n"


def render_score_markdown(r: ScoreReport) -> str:
    """The Markdown report of scores without labels (`curate report`)."""
    lines = [
        "# Score report",
        "",
        f"- source: `{r.source}`",
        f"- model: `{r.model}`",
        f"- rows: {r.rows} ({r.scored} scored, {r.unscored} unscored)",
        f"- scored with calibration: {'none' if not r.calibration else json.dumps(r.calibration)}",
        "",
    ]
    if r.quantiles:
        lines += [
            f"## {_SCORE} quantiles",
            "",
            _md_table(list(r.quantiles), [[f"{v:.4f}" for v in r.quantiles.values()]]),
            "",
        ]
    lines += [
        f"## Counts at candidate thresholds (remove when {_SCORE} >= threshold)",
        "",
        _md_table(
            ["threshold", "kept", "removed", "removed share"],
            [
                [f"{c['threshold']:g}", c["kept"], c["removed"], f"{c['removed_share']:.4f}"]
                for c in r.counts
            ],
        ),
        "",
    ]
    if r.rule:
        band = r.rule["review_band"]
        desc = f"threshold {r.rule['threshold']:.6g}" + (
            f", review band [{band[0]:.6g}, {band[1]:.6g})" if band else ""
        )
        lines += [
            f"## Decision ({desc}, unscored: {r.rule['unscored']})",
            "",
            _md_table(
                ["keep", "remove", "review", "unscored"],
                [[r.rule[k] for k in ("keep", "remove", "review", "unscored")]],
            ),
            "",
        ]
    if r.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in r.notes], ""]
    if r.files:
        lines += ["## Files", "", *[f"- `{f}`" for f in r.files], ""]
    return "\n".join(lines)
