"""Scores without labels (`curate report`): how many images each candidate threshold, or one
decision, would keep and remove, read from scored Parquet files; and the decision a
`curate eval` report chose, on the scale of the file it is applied to."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from curate import schema
from curate.evaluation.base import removed
from curate.evaluation.stored import stored_scoring

if TYPE_CHECKING:
    from curate.calibration import Calibration
    from curate.filtering import DecisionRule

CANDIDATE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class ScoreReport:
    """What `curate report` found; `to_dict` is its report.json."""

    source: str
    rows: int
    scored: int
    unscored: int
    model: str | None
    calibration: dict[str, Any] | None  # the one the file was scored with
    quantiles: dict[str, float]
    counts: list[dict[str, Any]]  # per candidate threshold
    rule: dict[str, Any] | None = None  # the decision asked for, with its counts
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_scores(
    paths: Sequence[str | os.PathLike], score_column: str = schema.FAKE_PROB
) -> tuple[np.ndarray, dict[str, str]]:
    """`fake_prob` of scored Parquet file(s) (NaN where unscored) and the first file's
    `curate.*` metadata; only the score column is read, never the images."""
    import pyarrow.parquet as pq

    from curate.io.parquet import curate_metadata

    parts = []
    for path in paths:
        try:
            names = pq.read_schema(path).names
        except Exception as exc:
            raise ValueError(f"cannot read {os.fspath(path)} as Parquet: {exc}") from None
        if score_column not in names:
            raise ValueError(
                f"{os.fspath(path)} has no {score_column!r} column (columns: {', '.join(names)}); "
                "score it first with `curate score`"
            )
        col = pq.read_table(path, columns=[score_column]).column(score_column)
        parts.append(col.cast("float64").to_numpy(zero_copy_only=False))
    p = np.concatenate(parts) if parts else np.zeros(0)
    return p, curate_metadata(paths[0]) if paths else {}


def summarize_scores(
    p: Any,
    *,
    source: str = "",
    metadata: Mapping[str, str] | None = None,
    thresholds: Sequence[float] = CANDIDATE_THRESHOLDS,
    rule: DecisionRule | None = None,
    notes: Sequence[str] = (),
) -> ScoreReport:
    """Counts at candidate thresholds (and of `rule`'s outcomes) for scores without labels:
    what a cut would remove from this data. `metadata` is the scored file's `curate.*`
    entries, for the model and calibration the scores were made with."""
    from curate.filtering import OUTCOMES

    p = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(p)
    scoring = stored_scoring(metadata or {})
    qs = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    quantiles = (
        {f"p{int(q * 100):02d}": float(np.quantile(p[ok], q)) for q in qs} if ok.any() else {}
    )
    rule_out = None
    if rule is not None:
        decided = rule.decide_many(p)
        rule_out = {
            "threshold": rule.threshold,
            "review_band": list(rule.review_band) if rule.review_band else None,
            "unscored": rule.unscored,
            **{k: int((decided == k).sum()) for k in OUTCOMES},
        }
    return ScoreReport(
        source=source,
        rows=len(p),
        scored=int(ok.sum()),
        unscored=int((~ok).sum()),
        model=scoring.model,
        calibration=scoring.calibration.to_dict() if scoring.calibration else None,
        quantiles=quantiles,
        counts=score_counts(p[ok], thresholds, int((~ok).sum())),
        rule=rule_out,
        notes=list(notes),
    )


def _same_calibration(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    if not a or not b:
        return not a and not b
    return all(
        math.isclose(float(a.get(k, 0.0)), float(b.get(k, 0.0)), rel_tol=1e-9, abs_tol=1e-12)
        for k in ("slope", "intercept")
    )


def rule_from_eval(
    eval_report: str | os.PathLike, scored_with: Calibration | None
) -> tuple[DecisionRule, list[str]]:
    """The decision (threshold and review band) a `curate eval` report.json chose, on the
    scale of a file scored with the calibration `scored_with`: thresholds chosen on a
    calibration fitted by the eval are used as they are on files scored with it, and
    translated back on files scored as the eval's sample was. Returns the rule and notes."""
    from curate.filtering import DecisionRule

    name = os.fspath(eval_report)
    try:
        with open(name, encoding="utf-8") as f:
            data = json.load(f)
        chosen = data["chosen"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read an eval report from {name}: {exc}") from None
    if chosen.get("threshold") is None:
        raise ValueError(f"{name} has no chosen threshold (its target was not reached)")
    scored_calibration = scored_with.to_dict() if scored_with is not None else None
    band = data.get("review")
    notes: list[str] = []
    fitted = (data.get("calibration") or {}).get("calibration")
    sample_scale = data.get("scored_with")  # the calibration the eval's sample was scored with
    if fitted is not None and _same_calibration(scored_calibration, fitted):
        use_raw = False
    elif _same_calibration(scored_calibration, sample_scale):
        use_raw = fitted is not None
        if use_raw:
            notes.append(
                "the eval chose its threshold on calibrated scores and this file was scored "
                "without that calibration: using the equivalent threshold on its scale"
            )
    else:

        def describe(c: Mapping[str, Any] | None) -> str:
            return (
                "no calibration"
                if not c
                else f"slope {c['slope']:.6g}, intercept {c['intercept']:.6g}"
            )

        expected = describe(fitted) + (f" or {describe(sample_scale)}" if fitted else "")
        raise ValueError(
            f"this file was scored with {describe(scored_calibration)} but the eval's thresholds "
            f"apply to scores made with {expected}; score it again with the matching --calibration"
        )
    key = "threshold_uncalibrated" if use_raw else "threshold"
    t = float(chosen[key])
    rb = None
    if band and band["low"] < band["high"]:
        lo, hi = ("low_uncalibrated", "high_uncalibrated") if use_raw else ("low", "high")
        rb = (float(band[lo]), float(band[hi]))
    return DecisionRule(threshold=t, review_band=rb), notes


def score_counts(
    p: Any, thresholds: Sequence[float] = CANDIDATE_THRESHOLDS, n_unscored: int = 0
) -> list[dict[str, Any]]:
    """For unlabelled scores: how many images each candidate threshold keeps and removes."""
    p = np.asarray(p, dtype=np.float64)
    p = p[np.isfinite(p)]
    rows = []
    for t in thresholds:
        rem = int(removed(p, t).sum())
        rows.append(
            {
                "threshold": float(t),
                "kept": len(p) - rem,
                "removed": rem,
                "removed_share": rem / len(p) if len(p) else 0.0,
                "unscored": int(n_unscored),
            }
        )
    return rows


def write_score_report(
    report: ScoreReport, p: Any, out_dir: str, *, overwrite: bool = False
) -> list[str]:
    """Write report.md, report.json and hist.png for unlabelled scores."""
    from curate.evaluation import plots
    from curate.evaluation.render import render_score_markdown, report_json
    from curate.io.atomic import atomic_write_text

    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "report.json")
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a report; pass --overwrite to replace it")
    p = np.asarray(p, dtype=np.float64)
    lines: dict[str, float] = {}
    if report.rule:
        band = report.rule["review_band"]
        if band:
            lines = {"review from": band[0], "remove from": band[1]}
        else:
            lines = {"threshold": report.rule["threshold"]}
    plots.score_histogram(
        p[np.isfinite(p)],
        os.path.join(out_dir, "hist.png"),
        thresholds=lines,
        title=f"{schema.FAKE_PROB} of {report.scored} scored images",
    )
    report.files = ["hist.png", "report.json", "report.md"]
    atomic_write_text(os.path.join(out_dir, "report.md"), render_score_markdown(report))
    atomic_write_text(target, report_json(report.to_dict()))
    return [os.path.join(out_dir, f) for f in report.files]
