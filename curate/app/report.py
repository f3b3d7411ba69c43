"""Counting what thresholds would do to scored, unlabelled data: `report_scores(ReportRequest)`
(`curate report`). Reads only the scores, never the images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from curate import schema
from curate.app.options import RequestError, check_report_dir
from curate.app.progress import Progress

if TYPE_CHECKING:
    from curate.evaluation.scores import ScoreReport
    from curate.filtering import DecisionRule


@dataclass(frozen=True)
class ReportRequest:
    """Which scored file(s) to count, at which thresholds, into which folder.

    `thresholds` are the candidate cuts to count at (default
    `curate.evaluation.CANDIDATE_THRESHOLDS`). One decision can be counted too: `threshold`
    (and `review_band`), as `curate filter` would apply it, or the one a `curate eval`
    report.json chose (`from_eval`), translated to the scale the file was scored on."""

    scored: str | os.PathLike | Sequence[str | os.PathLike]
    out_dir: str | os.PathLike
    thresholds: Sequence[float] | None = None
    threshold: float | None = None
    review_band: tuple[float, float] | None = None
    from_eval: str | os.PathLike | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class ReportResult:
    """The counts (`report`) and the files written."""

    report: ScoreReport
    out_dir: str
    files: list[str]


def report_scores(request: ReportRequest, progress: Progress | None = None) -> ReportResult:
    """Count what the candidate thresholds (and the decision asked for) do to the scores.

    Raises `RequestError` (a `ValueError`) for inputs that cannot work, before anything is
    written."""
    from curate.app.filter import scored_paths
    from curate.evaluation.scores import (
        CANDIDATE_THRESHOLDS,
        read_scores,
        summarize_scores,
        write_score_report,
    )

    progress = progress or Progress()
    paths = scored_paths(request.scored)
    thresholds = sorted(
        set(CANDIDATE_THRESHOLDS if request.thresholds is None else request.thresholds)
    )
    if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise RequestError(f"--thresholds must be numbers in [0, 1], got {request.thresholds!r}")
    if request.from_eval is not None:
        if request.threshold is not None or request.review_band is not None:
            raise RequestError("give --threshold/--review-band or --from-eval, not both")
        if not os.path.isfile(request.from_eval):
            raise RequestError(f"--from-eval {os.fspath(request.from_eval)} is not a file")
    rule = _rule(request.threshold, request.review_band)
    out_dir = check_report_dir(request.out_dir, request.overwrite)
    progress.wait("Reading scores")
    p, metadata = read_scores(paths)
    notes: list[str] = []
    if request.from_eval is not None:
        from curate.evaluation.scores import rule_from_eval
        from curate.evaluation.stored import stored_scoring

        rule, notes = rule_from_eval(request.from_eval, stored_scoring(metadata).calibration)
    if isinstance(request.scored, (str, os.PathLike)):
        source = os.fspath(request.scored)
    else:
        source = ", ".join(paths)
    report = summarize_scores(
        p,
        source=source,
        metadata=metadata,
        thresholds=thresholds,
        rule=rule,
        notes=notes,
    )
    files = write_score_report(report, p, out_dir, overwrite=request.overwrite)
    return ReportResult(report, out_dir, files)


def _rule(threshold: float | None, band: tuple[float, float] | None) -> DecisionRule | None:
    """The decision to count, if one was asked for. A band alone decides by its edges; the
    threshold it also needs is the default one, moved inside the band."""
    from curate.filtering import DecisionRule

    if threshold is None and band is None:
        return None
    if threshold is None:
        threshold = min(max(schema.LABEL_THRESHOLD, band[0]), band[1])
    try:
        return DecisionRule(threshold=threshold, review_band=band)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
