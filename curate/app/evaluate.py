"""Measuring the detector on a labelled sample: `evaluate(EvalRequest)` (`curate eval`).

Every option is checked before a model loads. Then the source is read with its labels, its
scores taken as stored (a file written by `curate score`) or made by a scorer built here,
evaluated (`curate.evaluation`), optionally probed for robustness with the model and
calibration that made the scores, and the report folder written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from curate.app.options import (
    RequestError,
    ScorerSettings,
    SourceSettings,
    check_label_map,
    check_report_dir,
)
from curate.app.progress import Progress

if TYPE_CHECKING:
    from curate.calibration import Calibration
    from curate.evaluation.labels import LabelledSample
    from curate.evaluation.report import EvalOptions, EvalReport
    from curate.scorer import DeepfakeScorer
    from curate.sources import Source


@dataclass(frozen=True)
class EvalRequest(ScorerSettings, SourceSettings):
    """What to evaluate and how (the options of `curate eval`; the scorer's and the source's
    are `ScorerSettings` and `SourceSettings`, keyword-only).

    `options` say what to measure and decide (targets, calibration fit, bootstrap...;
    default `EvalOptions()`). Scores already in the source are used as they are unless
    `rescore`; otherwise the images are scored with the scorer settings (and `calibration`, a
    saved calibration JSON). `robustness` re-scores a stratified sample of `probe_limit`
    images after each of `perturbations` (default `curate.evaluation.DEFAULT_PERTURBATIONS`),
    with the scorer that made the scores (for stored scores: the settings the file records)."""

    source: str | os.PathLike
    out_dir: str | os.PathLike
    label_column: str = "label"
    label_map: str | Mapping[str, str] | Iterable[str] | None = None
    group_column: str | None = None
    options: EvalOptions | None = None
    calibration: str | os.PathLike | None = None
    rescore: bool = False
    robustness: bool = False
    perturbations: Sequence[str] | None = None
    probe_limit: int = 200
    overwrite: bool = False


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation found (`report`), on which rows (`sample`), and the files it wrote."""

    report: EvalReport
    sample: LabelledSample
    out_dir: str
    files: list[str]


@dataclass(frozen=True)
class _Checked:
    source: Source
    out_dir: str
    options: EvalOptions
    label_map: dict[str, str] | None
    perturbations: tuple[str, ...]
    calibration: Calibration | None
    batch_size: int | str


def evaluate(request: EvalRequest, progress: Progress | None = None) -> EvalResult:
    """Evaluate the detector on `request.source` and write the report to `request.out_dir`.

    Raises `RequestError` (a `ValueError`) for options that cannot work, before any model
    loads, and `curate.evaluation.EvaluationError` (also a `ValueError`) when the sample
    cannot answer what was asked."""
    from curate.evaluation.labels import collect_labelled
    from curate.evaluation.report import evaluate_sample, write_eval_report
    from curate.pipeline.compile import compile_notices

    progress = progress or Progress()
    checked = _check(request)
    src = checked.source
    scorer = _scorer(request, checked, checked.calibration)
    progress.start("Reading labels and scores", total=src.num_rows)
    with compile_notices(progress.note):
        sample = collect_labelled(
            src,
            request.label_column,
            scorer=scorer,
            label_map=checked.label_map,
            group_column=request.group_column,
            # Rows read per scorer call; the scorer splits them into forward batches.
            batch_size=256 if checked.batch_size == "auto" else max(checked.batch_size, 64),
            rescore=request.rescore,
            progress=progress.advance,
        )
    report = evaluate_sample(sample, checked.options)
    report.source = os.fspath(request.source)
    if sample.stored_scores and checked.calibration not in (None, sample.calibration):
        report.notes.append(
            "--calibration was not applied: the scores were read from the source "
            "(pass --rescore to score again with it)"
        )
    if request.robustness:
        report.robustness = _probe(request, checked, sample, report, scorer, progress)
    files = write_eval_report(report, sample, checked.out_dir, overwrite=request.overwrite)
    return EvalResult(report, sample, checked.out_dir, files)


def _check(request: EvalRequest) -> _Checked:
    """Everything that can be wrong with the request, found before any model loads."""
    from curate.calibration import resolve_calibration
    from curate.evaluation.calibration import CALIBRATION_METHODS
    from curate.evaluation.report import EvalOptions
    from curate.evaluation.robustness import DEFAULT_PERTURBATIONS, check_perturbations
    from curate.sources import resolve_source

    out_dir = check_report_dir(request.out_dir, request.overwrite)
    options = request.options or EvalOptions()
    if options.fit_calibration not in (None, *CALIBRATION_METHODS):
        raise RequestError(
            f"--fit-calibration must be one of {', '.join(CALIBRATION_METHODS)}, "
            f"got {options.fit_calibration!r}"
        )
    label_map = check_label_map(request.label_map)
    perturbations = tuple(request.perturbations or DEFAULT_PERTURBATIONS)
    if request.robustness:
        check_perturbations(perturbations)
        if request.probe_limit < 2:
            raise RequestError(f"--probe-limit must be at least 2, got {request.probe_limit}")
    calibration = resolve_calibration(request.calibration)
    batch_size = request.check_scoring()
    src = resolve_source(
        request.source, image_column=request.image_column, split=request.split, limit=request.limit
    )
    return _Checked(src, out_dir, options, label_map, perturbations, calibration, batch_size)


def _scorer(
    settings: ScorerSettings, checked: _Checked, calibration: Calibration | None
) -> DeepfakeScorer:
    # with_logits: a calibration is fitted on exact logit gaps, not on float32 probabilities.
    return settings.scorer(
        checked.batch_size,
        checked.source.image_column,
        calibration=calibration,
        with_logits=True,
    )


def _probe(
    request: EvalRequest,
    checked: _Checked,
    sample: LabelledSample,
    report: EvalReport,
    scorer: DeepfakeScorer,
    progress: Progress,
) -> list[dict]:
    """The robustness probe on a stratified sample, scored by what made the sample's scores."""
    from curate.evaluation.robustness import gather_images, probe_indices, robustness_probe
    from curate.evaluation.stored import scoring_of

    idx = probe_indices(sample.y, request.probe_limit, checked.options.seed)
    images = gather_images(checked.source, sample.rows[idx])
    probe_scorer = _scorer_of(request, checked, sample, scorer)
    fitted = report.calibration.calibration if report.calibration else None
    report.robustness_scored_by = scoring_of(probe_scorer).describe()
    progress.start(f"Robustness ({len(checked.perturbations)} variants)", total=len(idx))
    return robustness_probe(
        probe_scorer,
        images,
        sample.y[idx],
        report.chosen.threshold,
        perturbations=checked.perturbations,
        calibration=fitted,
        progress=progress.advance,
    )


def _scorer_of(
    request: EvalRequest, checked: _Checked, sample: LabelledSample, scorer: DeepfakeScorer
) -> DeepfakeScorer:
    """A scorer that makes the sample's scores again: `scorer` when it made them; for stored
    scores, the model or ensemble (unless `request.model` names one), revision, combine, head,
    synthetic labels, dtype (unless `request.dtype` names one) and calibration the file
    records, so the probe's unperturbed row matches the scores the threshold was chosen on."""
    if not sample.stored_scores:
        return scorer
    settings = request.scorer_settings()
    recorded = sample.scoring
    if request.model is None and recorded is not None and recorded.model is not None:
        members = recorded.members
        settings = dataclasses.replace(
            settings,
            model=tuple(members) if members else recorded.model,
            revision=recorded.revision,
            combine=recorded.combine or "mean",
            head=recorded.head,
            synthetic_labels=recorded.synthetic_labels,
            # The recorded precision, unless --dtype asks for one: bf16 moves scores a little.
            dtype=recorded.dtype if request.dtype == "auto" and recorded.dtype else request.dtype,
        )
    if settings == request.scorer_settings() and sample.calibration == scorer.calibration:
        return scorer
    return _scorer(settings, checked, sample.calibration)
