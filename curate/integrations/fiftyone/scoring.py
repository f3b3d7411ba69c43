"""Score FiftyOne samples with `DeepfakeScorer` and write the results back by sample id.

FiftyOne is only the source of file paths and the sink of values: chunks of `filepath`s go to
`DeepfakeScorer.score_images`, and what it returns is written onto the samples (`fake_prob`,
the `deepfake` Classification, `deepfake_error`, an ensemble's `member_fake_probs`, and the
provenance evidence when asked). Fake and Real get distinct colours in the App (`colors`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from curate import schema
from curate.integrations.fiftyone.colors import DECISION_COLORS, LABEL_COLORS, set_value_colors
from curate.integrations.fiftyone.fields import (
    DECISION_FIELD,
    DECISION_KEY,
    ERROR_FIELD,
    INFO_KEY,
    LABEL_FIELD,
    MEMBERS_FIELD,
    PROB_FIELD,
    check_fields,
)
from curate.integrations.fiftyone.wording import count
from curate.scorer import DeepfakeScorer

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection


@dataclass
class ScoreProgress:
    """Where a scoring run stands after one chunk was written."""

    done: int  # samples handled so far in this run (scored or failed)
    total: int  # samples this run will handle (after skip_existing)
    scored: int
    failed: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def label(self) -> str:
        return f"Scored {self.done:,} of {count(self.total)} ({self.failed:,} unreadable)"


@dataclass
class ScoreSummary:
    """What `score_samples` did."""

    total: int = 0  # samples in the collection
    scored: int = 0
    failed: int = 0
    skipped: int = 0  # already had a score (or an error) and skip_existing was set
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        done = self.scored + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0


# -- scoring ------------------------------------------------------------------------------------
def pending_samples(
    samples: SampleCollection,
    prob_field: str = PROB_FIELD,
    error_field: str = ERROR_FIELD,
    retry_failed: bool = False,
) -> SampleCollection:
    """The samples of `samples` that have no score yet (and no error, unless `retry_failed`)."""
    from fiftyone import ViewField as F

    done = F(prob_field).exists()
    if not retry_failed:
        done = done | F(error_field).exists()
    return samples.match(~done)


def iter_score_samples(
    samples: SampleCollection,
    scorer: DeepfakeScorer | None = None,
    *,
    prob_field: str = PROB_FIELD,
    label_field: str = LABEL_FIELD,
    error_field: str = ERROR_FIELD,
    skip_existing: bool = False,
    retry_failed: bool = False,
    chunk_size: int | None = None,
    summary: ScoreSummary | None = None,
    **scorer_kwargs: Any,
) -> Iterator[ScoreProgress]:
    """`score_samples` as an iterator of a `ScoreProgress` per chunk written (a FiftyOne
    operator forwards these to the App). See `score_samples` for the arguments.

    Not a generator function: the checks and the model load run in this call, so a field
    conflict or a model that cannot load raises here, before the first `next()` and before
    anything is written."""
    scorer = scorer or DeepfakeScorer(**scorer_kwargs)
    summary = summary if summary is not None else ScoreSummary()
    extra = scorer.provenance.columns if scorer.provenance is not None else ()
    if scorer.is_ensemble:
        extra = (*extra, MEMBERS_FIELD)
    check_fields(samples, prob_field, label_field, error_field, extra)
    detector = scorer.load()
    batch = scorer.chunk_size(detector)
    chunk = int(chunk_size or max(4 * batch, 32))
    if chunk < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    # Without a chunk size, the first chunk is one batch: the first progress report (and the
    # App's progress box) comes after one batch, not four.
    first = chunk if chunk_size else min(batch, chunk)
    summary.total = len(samples)
    todo = samples
    if skip_existing:
        todo = pending_samples(samples, prob_field, error_field, retry_failed)
    ids, paths = todo.values(["id", "filepath"])
    summary.skipped = summary.total - len(ids)
    fields = _Fields(prob_field, label_field, error_field, tuple(extra))
    bounds = _chunk_bounds(len(ids), first, chunk)
    return _score_chunks(samples._dataset, scorer, detector, ids, paths, bounds, fields, summary)


@dataclass(frozen=True)
class _Fields:
    prob: str
    label: str
    error: str
    extra: tuple[str, ...]  # contract columns written under their own name


def _chunk_bounds(n: int, first: int, chunk: int) -> list[tuple[int, int]]:
    bounds, start, size = [], 0, first
    while start < n:
        bounds.append((start, min(start + size, n)))
        start, size = start + size, chunk
    return bounds


def _score_chunks(
    dataset,
    scorer: DeepfakeScorer,
    detector: Any,
    ids: list[str],
    paths: list[str],
    bounds: list[tuple[int, int]],
    fields: _Fields,
    summary: ScoreSummary,
) -> Iterator[ScoreProgress]:
    # Recorded first: an interrupted run's scores were made with these settings too.
    _record_settings(dataset, scorer, fields)
    set_value_colors(dataset, fields.label, LABEL_COLORS)
    # The decision field is written later, by a decision rule; its colours are set now, so an
    # App that has the dataset open already has them.
    set_value_colors(dataset, DECISION_FIELD, DECISION_COLORS)
    started = time.perf_counter()
    # Writes run on a thread so the database round trip overlaps the next chunk's scoring;
    # one write at a time, in order, and the last one always finishes (an interrupted run
    # keeps every chunk it scored).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="curate-fo-write") as writer:
        pending: Future | None = None
        try:
            for start, end in bounds:
                chunk_ids = ids[start:end]
                out = scorer.score_images(paths[start:end])
                values = _field_values(out, detector, fields)
                if pending is not None:
                    pending.result()
                pending = writer.submit(_write, dataset, chunk_ids, values)
                failed = sum(e is not None for e in out[schema.ERROR])
                summary.failed += failed
                summary.scored += len(chunk_ids) - failed
                summary.seconds = time.perf_counter() - started
                yield ScoreProgress(end, len(ids), summary.scored, summary.failed)
        finally:
            if pending is not None:
                pending.result()
    summary.seconds = time.perf_counter() - started


def score_samples(
    samples: SampleCollection,
    scorer: DeepfakeScorer | None = None,
    *,
    prob_field: str = PROB_FIELD,
    label_field: str = LABEL_FIELD,
    error_field: str = ERROR_FIELD,
    skip_existing: bool = False,
    retry_failed: bool = False,
    chunk_size: int | None = None,
    progress: Callable[[ScoreProgress], Any] | None = None,
    **scorer_kwargs: Any,
) -> ScoreSummary:
    """Score every sample of a dataset or view and write the results onto the samples.

    Per sample: `prob_field` (float, probability the image is synthetic), `label_field`
    (`fo.Classification`: the scorer's `deepfake_label`, "Fake" iff fake_prob >= 0.5,
    confidence = probability of that label, `logits` when the scorer has `with_logits=True`)
    and `error_field` (null, or why the image could not be read, in which case the other two
    are null); with the scorer's provenance on, its evidence columns too. Results are written
    by sample id every `chunk_size` samples, so an interrupted run keeps what it scored and
    `skip_existing=True` re-runs only the rest (samples with an error count as done unless
    `retry_failed`). `progress(ScoreProgress)` is called after each chunk. `scorer` (or a
    `DeepfakeScorer(**scorer_kwargs)`) does all decoding and inference.
    """
    summary = ScoreSummary()
    for event in iter_score_samples(
        samples,
        scorer,
        prob_field=prob_field,
        label_field=label_field,
        error_field=error_field,
        skip_existing=skip_existing,
        retry_failed=retry_failed,
        chunk_size=chunk_size,
        summary=summary,
        **scorer_kwargs,
    ):
        if progress is not None:
            progress(event)
    return summary


def _two_classes(detector: Any) -> bool:
    id2label = getattr(getattr(getattr(detector, "model", None), "config", None), "id2label", None)
    return (
        len(getattr(detector, "fake_indices", ())) == 1
        and len(getattr(detector, "real_indices", ())) == 1
        and id2label is not None
        and len(id2label) == 2
    )


def _field_values(out: dict[str, list], detector: Any, fields: _Fields) -> dict[str, list]:
    """The scorer's columns as field name -> values (Classification labels built here)."""
    import fiftyone as fo

    labels = []
    # Logits are stored per class of a two-class checkpoint; an ensemble's or a multi-class
    # checkpoint's fake_logit is a combined gap, which is no class's logit: none are stored.
    has_logits = schema.FAKE_LOGIT in out and _two_classes(detector)
    n_labels = 2 if has_logits else 0
    for i, p in enumerate(out[schema.FAKE_PROB]):
        if p is None:
            labels.append(None)
            continue
        label = out[schema.LABEL][i]
        kwargs = {}
        if has_logits:
            logits = np.zeros(n_labels, dtype=np.float32)
            logits[detector.fake_index] = out[schema.FAKE_LOGIT][i]
            logits[detector.real_index] = out[schema.REAL_LOGIT][i]
            kwargs["logits"] = logits
        confidence = p if label == schema.FAKE else out[schema.REAL_PROB][i]
        labels.append(fo.Classification(label=label, confidence=confidence, **kwargs))
    values = {
        fields.prob: out[schema.FAKE_PROB],
        fields.label: labels,
        fields.error: out[schema.ERROR],
    }
    values.update({c: out[c] for c in fields.extra})
    return values


def _write(dataset, ids: Sequence[str], values: dict[str, list]) -> None:
    for name, column in values.items():
        dataset.set_values(name, dict(zip(ids, column, strict=True)), key_field="id")


def _record_settings(dataset, scorer: DeepfakeScorer, fields: _Fields) -> None:
    info = dict(dataset.info.get(INFO_KEY) or {})
    entry = dict(scorer.metadata(), label_field=fields.label, error_field=fields.error)
    # The decision last applied to this field is a rule on its scores: it survives re-scoring.
    kept = {k: v for k, v in (info.get(fields.prob) or {}).items() if k == DECISION_KEY}
    info[fields.prob] = {**entry, **kept}
    dataset.info[INFO_KEY] = info
    dataset.save()


def label_field_of(samples: SampleCollection, prob_field: str = PROB_FIELD) -> str:
    """The Classification field written beside `prob_field` (as recorded), else `deepfake`."""
    info = (samples._dataset.info.get(INFO_KEY) or {}).get(prob_field) or {}
    return str(info.get("label_field") or LABEL_FIELD)


def ensemble_members(samples: SampleCollection, prob_field: str = PROB_FIELD) -> list[str]:
    """The models of the ensemble that wrote `prob_field` (in `member_fake_probs` order), or []."""
    members = scoring_settings(samples, prob_field).get(schema.METADATA_PREFIX + "members")
    try:
        names = json.loads(members) if members else []
    except ValueError:
        return []
    return [str(m) for m in names] if isinstance(names, list) else []


def scoring_settings(samples: SampleCollection, prob_field: str = PROB_FIELD) -> dict[str, str]:
    """The `curate.*` settings recorded by the last `score_samples` run that wrote
    `prob_field` (model, revision, dtype, calibration, version), or {}."""
    info = (samples._dataset.info.get(INFO_KEY) or {}).get(prob_field) or {}
    return {k: v for k, v in info.items() if k.startswith(schema.METADATA_PREFIX)}
