"""FiftyOne adapter: score sample collections with `DeepfakeScorer`, act on the scores, export.

FiftyOne is only the source of file paths and the sink of values: `score_samples` reads each
sample's `filepath`, hands chunks of paths to `DeepfakeScorer.score_images` and writes what
it returns back by sample id (`fake_prob` float, `deepfake` Classification, and the reason
when an image cannot be read). `apply_decision` turns a `curate.filtering.DecisionRule` into
tags, a saved view or deletions; `export_parquet` writes a view through
`curate.io.parquet.write_parquet`. The plugin in `plugins/curate` is a thin front end over these.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from curate.filtering import KEEP, OUTCOMES, REMOVE, REVIEW, UNSCORED, DecisionRule
from curate.provenance import PROVENANCE_COLUMNS, WATERMARK_COLUMN
from curate.schema import FAKE
from curate.scorer import DeepfakeScorer

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from fiftyone.core.expressions import ViewExpression

PROB_FIELD = "fake_prob"
LABEL_FIELD = "deepfake"
ERROR_FIELD = "deepfake_error"
REMOVE_TAG = "synthetic"
REVIEW_TAG = "deepfake_review"
UNSCORED_TAG = "deepfake_unscored"
KEPT_VIEW = "deepfake_kept"
INFO_KEY = "curate"  # dataset.info[INFO_KEY][prob_field]: the settings that wrote the scores
ACTIONS = ("tag", "save_view", "delete")
# Written by `score_samples` when the scorer has provenance on; exported beside the scores.
PROVENANCE_FIELDS = (*PROVENANCE_COLUMNS, WATERMARK_COLUMN)


class FieldConflictError(ValueError):
    """An output field already exists with another type; the message says which."""


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
        return f"Scored {self.done}/{self.total} samples ({self.failed} unreadable)"


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


# -- validation ------------------------------------------------------------------------------
def _expected_types():
    import fiftyone as fo

    return {
        "prob": (fo.FloatField, {}),
        "label": (fo.EmbeddedDocumentField, {"embedded_doc_type": fo.Classification}),
        "error": (fo.StringField, {}),
    }


def check_fields(
    samples: SampleCollection,
    prob_field: str = PROB_FIELD,
    label_field: str = LABEL_FIELD,
    error_field: str = ERROR_FIELD,
) -> None:
    """Raise `FieldConflictError` if an output field exists with another type, or if two of
    them share a name; declare the missing ones on the dataset otherwise."""
    names = {"prob": prob_field, "label": label_field, "error": error_field}
    if len(set(names.values())) != 3:
        raise FieldConflictError(
            f"the score, label and error fields must be three different names, got {names}"
        )
    for kind, name in names.items():
        problem = field_problem(samples, name, kind)
        if problem:
            raise FieldConflictError(problem)
    dataset = samples._dataset
    for kind, name in names.items():
        if not dataset.has_sample_field(name):
            ftype, kwargs = _expected_types()[kind]
            dataset.add_sample_field(name, ftype, **kwargs)


def field_problem(samples: SampleCollection, name: str, kind: str) -> str | None:
    """Why `name` cannot hold output of `kind` ("prob", "label", "error"), or None."""
    import fiftyone as fo

    if not name or not name.strip():
        return "field name must not be empty"
    if name.startswith("_") or "." in name or "$" in name:
        return f"{name!r} is not a usable top-level field name (no leading '_', '.' or '$')"
    if name in ("id", "filepath", "tags", "metadata", "created_at", "last_modified_at"):
        return f"{name!r} is a built-in sample field; pick another name"
    schema = samples._dataset.get_field_schema()
    if name not in schema:
        return None
    existing = schema[name]
    ftype, kwargs = _expected_types()[kind]
    ok = isinstance(existing, ftype)
    if ok and "embedded_doc_type" in kwargs:
        ok = existing.document_type is fo.Classification
    if ok:
        return None
    want = {"prob": "FloatField", "label": "Classification", "error": "StringField"}[kind]
    have = type(existing).__name__
    if isinstance(existing, fo.EmbeddedDocumentField):
        have = existing.document_type.__name__
    return f"field {name!r} already exists as {have}, not {want}; pick another name"


@lru_cache(maxsize=64)
def model_problem(model: str, revision: str | None = None) -> str | None:
    """Why `model` cannot be loaded as a Fake/Real detector, from its configs only (no weights
    are read), or None. Cached, because App forms call it on every change."""
    from transformers.utils import cached_file

    from curate.detectors import (
        ModelLoadError,
        label_indices,
        load_preprocess_config,
        model_load_error,
    )

    if not model or not model.strip():
        return "model must not be empty"
    try:
        load_preprocess_config(model, revision)
        try:
            config_path = cached_file(model, "config.json", revision=revision)
        except OSError as exc:
            raise model_load_error(model, exc) from None
        with open(config_path, encoding="utf-8") as f:
            label_indices(json.load(f).get("id2label") or {})
    except ModelLoadError as exc:
        return str(exc)
    except (OSError, ValueError, KeyError) as exc:
        return f"Could not load model {model!r}: {str(exc).splitlines()[0]}"
    return None


def parse_float(value: Any, name: str) -> float:
    """A probability from a form or CLI value, with a one-line error when it is not one."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if math.isnan(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return f


# -- scoring ---------------------------------------------------------------------------------
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
    """`score_samples` as a generator: yields a `ScoreProgress` after each chunk is scored
    (a FiftyOne operator forwards these to the App). See `score_samples` for the arguments."""
    scorer = scorer or DeepfakeScorer(**scorer_kwargs)
    summary = summary if summary is not None else ScoreSummary()
    check_fields(samples, prob_field, label_field, error_field)
    detector = scorer.load()  # a model that cannot load fails here, before any write
    summary.total = len(samples)
    todo = samples
    if skip_existing:
        todo = pending_samples(samples, prob_field, error_field, retry_failed)
    ids, paths = todo.values(["id", "filepath"])
    summary.skipped = summary.total - len(ids)
    chunk = int(chunk_size or max(4 * scorer.chunk_size(detector), 32))
    if chunk < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    dataset = samples._dataset
    n_labels = len(detector.model.config.id2label)
    # Provenance evidence (scorer option) is written as plain fields of the same names.
    provenance_fields = scorer.provenance.columns if scorer.provenance is not None else ()
    # Recorded first: an interrupted run's scores were made with these settings too.
    _record_settings(dataset, scorer, prob_field, label_field, error_field)
    started = time.perf_counter()
    # Writes run on a thread so the database round trip overlaps the next chunk's scoring;
    # one write at a time, in order, and the last one always finishes (an interrupted run
    # keeps every chunk it scored).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="curate-fo-write") as writer:
        pending: Future | None = None
        try:
            for start in range(0, len(ids), chunk):
                chunk_ids = ids[start : start + chunk]
                out = scorer.score_images(paths[start : start + chunk])
                values = _field_values(out, detector, n_labels)
                values["extra"] = {c: out[c] for c in provenance_fields}
                if pending is not None:
                    pending.result()
                pending = writer.submit(
                    _write, dataset, chunk_ids, values, prob_field, label_field, error_field
                )
                failed = sum(e is not None for e in out["deepfake_error"])
                summary.failed += failed
                summary.scored += len(chunk_ids) - failed
                summary.seconds = time.perf_counter() - started
                yield ScoreProgress(
                    start + len(chunk_ids), len(ids), summary.scored, summary.failed
                )
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
    (`fo.Classification`: label "Fake"/"Real", confidence = probability of that label,
    `logits` when the scorer has `with_logits=True`) and `error_field` (null, or why the
    image could not be read, in which case the other two are null). Results are written by
    sample id every `chunk_size` samples, so an interrupted run keeps what it scored and
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


def _field_values(out: dict[str, list], detector: Any, n_labels: int) -> dict[str, list]:
    import fiftyone as fo

    probs, labels, errors = [], [], []
    has_logits = "fake_logit" in out
    for i, p in enumerate(out["fake_prob"]):
        if p is None:
            probs.append(None)
            labels.append(None)
        else:
            label = out["deepfake_label"][i]
            real = out["real_prob"][i]
            kwargs = {}
            if has_logits:
                logits = np.zeros(n_labels, dtype=np.float32)
                logits[detector.fake_index] = out["fake_logit"][i]
                logits[detector.real_index] = out["real_logit"][i]
                kwargs["logits"] = logits
            probs.append(p)
            labels.append(
                fo.Classification(label=label, confidence=p if label == FAKE else real, **kwargs)
            )
        errors.append(out["deepfake_error"][i])
    return {"prob": probs, "label": labels, "error": errors}


def _write(
    dataset, ids: Sequence[str], values: dict[str, list], prob: str, label: str, error: str
) -> None:
    for name, key in ((prob, "prob"), (label, "label"), (error, "error")):
        dataset.set_values(name, dict(zip(ids, values[key], strict=True)), key_field="id")
    for name, column in values.get("extra", {}).items():
        dataset.set_values(name, dict(zip(ids, column, strict=True)), key_field="id")


def _record_settings(dataset, scorer: DeepfakeScorer, prob: str, label: str, error: str) -> None:
    info = dict(dataset.info.get(INFO_KEY) or {})
    info[prob] = dict(scorer.metadata(), label_field=label, error_field=error)
    dataset.info[INFO_KEY] = info
    dataset.save()


def scoring_settings(samples: SampleCollection, prob_field: str = PROB_FIELD) -> dict[str, str]:
    """The `curate.*` settings recorded by the last `score_samples` run that wrote
    `prob_field` (model, revision, dtype, calibration, version), or {}."""
    info = (samples._dataset.info.get(INFO_KEY) or {}).get(prob_field) or {}
    return {k: v for k, v in info.items() if k.startswith("curate.")}


# -- decisions -------------------------------------------------------------------------------
def decision_expressions(
    rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, ViewExpression | None]:
    """One `ViewExpression` per outcome ("keep", "remove", "review", "unscored") that selects
    exactly the samples `rule.decide` gives that outcome (None: the outcome cannot occur).

    A sample is scored when its value is a number other than NaN: null, missing and NaN sort
    below every number in MongoDB, so `>= -inf` is false for exactly those."""
    from fiftyone import ViewField as F

    p = F(prob_field)
    scored = p >= float("-inf")
    exprs: dict[str, ViewExpression | None] = {
        KEEP: scored & (p < rule.keep_below),
        REMOVE: p >= rule.remove_from,  # implies scored
        REVIEW: (scored & (p >= rule.keep_below) & (p < rule.remove_from))
        if rule.review_band
        else None,
        UNSCORED: None,
    }
    unscored = ~scored
    if rule.review_conflicts:
        # Evidence that disagrees with the score sends the row to review (`DecisionRule.decide`).
        says = F("provenance_synthetic")
        says_synthetic, says_captured = says.is_in([True]), says.is_in([False])
        conflict = (exprs[KEEP] & says_synthetic) | (exprs[REMOVE] & says_captured)
        exprs[KEEP] = exprs[KEEP] & ~says_synthetic
        exprs[REMOVE] = exprs[REMOVE] & ~says_captured
        exprs[REVIEW] = conflict if exprs[REVIEW] is None else (exprs[REVIEW] | conflict)
    target = rule.unscored_outcome
    exprs[target] = unscored if exprs[target] is None else (exprs[target] | unscored)
    if rule.remove_strong_evidence:
        strong = F("provenance_strong").is_in([True])
        for outcome in (KEEP, REVIEW, UNSCORED):
            if exprs[outcome] is not None:
                exprs[outcome] = exprs[outcome] & ~strong
        exprs[REMOVE] = exprs[REMOVE] | strong
    return exprs


def decision_views(
    samples: SampleCollection, rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, SampleCollection]:
    """The samples of each outcome, as views of `samples` (empty views included)."""
    out = {}
    for outcome, expr in decision_expressions(rule, prob_field).items():
        out[outcome] = samples.match(expr) if expr is not None else samples.limit(0)
    return out


def count_decisions(
    samples: SampleCollection, rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, int]:
    """How many samples get each outcome (computed in the database; zeros included)."""
    exprs = decision_expressions(rule, prob_field)
    return {o: (samples.match(e).count() if e is not None else 0) for o, e in exprs.items()}


@dataclass
class DecisionSummary:
    """What `apply_decision` did: outcome counts and the action taken."""

    counts: dict[str, int] = field(default_factory=dict)
    action: str = "tag"
    deleted: int = 0
    saved_view: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # outcome -> tag applied


def apply_decision(
    samples: SampleCollection,
    rule: DecisionRule,
    *,
    action: Literal["tag", "save_view", "delete"] = "tag",
    prob_field: str = PROB_FIELD,
    remove_tag: str = REMOVE_TAG,
    review_tag: str = REVIEW_TAG,
    unscored_tag: str = UNSCORED_TAG,
    view_name: str = KEPT_VIEW,
    confirm_delete: bool = False,
) -> DecisionSummary:
    """Act on `rule`'s decisions for `samples`.

    - "tag" (non-destructive): samples to remove get `remove_tag`.
    - "save_view": the kept samples are saved as the dataset view `view_name` (a live
      `match` on `prob_field`, overwritten if it exists).
    - "delete": the samples to remove are deleted from the dataset; refuses unless
      `confirm_delete=True`.

    Whatever the action, review-band samples get `review_tag` and set-apart unscored samples
    `unscored_tag`. Before tagging, these tags are removed from `samples`, so after a re-run
    with another threshold they describe the current rule only.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
    if action == "delete" and not confirm_delete:
        raise ValueError("deleting samples needs an explicit confirmation (confirm_delete=True)")
    if action == "save_view" and not (view_name and view_name.strip()):
        raise ValueError("a saved view needs a name")
    if not samples._dataset.has_sample_field(prob_field):
        raise ValueError(
            f"the dataset has no {prob_field!r} field; score it first (detect_deepfakes)"
        )
    if rule.uses_provenance and not samples._dataset.has_sample_field("provenance_strong"):
        raise ValueError(
            "the rule uses provenance evidence but the dataset has no provenance fields; "
            "score it with provenance on (detect_deepfakes, 'Provenance evidence')"
        )
    views = decision_views(samples, rule, prob_field)
    summary = DecisionSummary(counts={o: len(v) for o, v in views.items()}, action=action)
    tags = {REVIEW: review_tag, UNSCORED: unscored_tag}
    if action == "tag":
        tags[REMOVE] = remove_tag
    stale = [t for t in tags.values() if t]
    if stale:
        samples.untag_samples(stale)
    for outcome, tag in tags.items():
        if tag and summary.counts[outcome]:
            views[outcome].tag_samples(tag)
            summary.tags[outcome] = tag
    if action == "save_view":
        samples._dataset.save_view(view_name, views[KEEP], overwrite=True)
        summary.saved_view = view_name
    elif action == "delete":
        summary.deleted = summary.counts[REMOVE]
        if summary.deleted:
            samples._dataset.delete_samples(views[REMOVE])
    return summary


# -- export ----------------------------------------------------------------------------------
def export_parquet(
    samples: SampleCollection,
    path: str | os.PathLike,
    *,
    rule: DecisionRule | None = None,
    outcomes: Sequence[str] = (KEEP,),
    prob_field: str = PROB_FIELD,
    label_field: str = LABEL_FIELD,
    error_field: str = ERROR_FIELD,
    fields: Sequence[str] = (),
    overwrite: bool = False,
    chunk_size: int = 256,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Write `samples` (only those whose outcome under `rule` is in `outcomes`, when a rule
    is given) to a Parquet file with the images embedded, via `curate.io.parquet.write_parquet`.

    Columns: `image` (HF `struct<bytes, path>`), `filepath`, `sample_id`, `tags`, `fake_prob`,
    `real_prob`, `deepfake_label`, `deepfake_error`, `decision` (with a rule), then `fields`
    (other sample fields; labels and documents as JSON). The scoring settings recorded on the
    dataset and the rule go in the schema metadata. Atomic; refuses an existing file unless
    `overwrite`. `progress(rows_written_so_far)` is called per chunk. Returns rows written."""
    from datasets import Features, Image, Value
    from datasets import Sequence as HFSequence

    from curate.io.parquet import write_parquet

    bad = [o for o in outcomes if o not in OUTCOMES]
    if bad:
        raise ValueError(f"unknown outcome(s) {bad}; choose from {', '.join(OUTCOMES)}")
    schema = samples._dataset.get_field_schema()
    for name in (prob_field, label_field, error_field):
        if name not in schema:
            raise ValueError(
                f"the dataset has no {name!r} field; score it first (detect_deepfakes)"
            )
    missing = [f for f in fields if f not in schema]
    if missing:
        raise ValueError(f"no such sample field(s): {missing}")
    view = samples
    metadata = dict(scoring_settings(samples, prob_field))
    if rule is not None:
        exprs = [decision_expressions(rule, prob_field)[o] for o in outcomes]
        exprs = [e for e in exprs if e is not None]
        if not exprs:
            view = samples.limit(0)
        else:
            expr = exprs[0]
            for e in exprs[1:]:
                expr = expr | e
            view = samples.match(expr)
        metadata.update(rule.to_metadata())
        metadata["curate.outcomes"] = json.dumps(list(outcomes))
    features = Features(
        {
            "image": Image(),
            "filepath": Value("string"),
            "sample_id": Value("string"),
            "tags": HFSequence(Value("string")),
        }
    )

    def batches() -> Iterator[dict[str, list]]:
        names = ["id", "filepath", "tags", prob_field, label_field + ".label", error_field]
        evidence = [c for c in PROVENANCE_FIELDS if c in schema and c not in fields]
        columns = view.values(names + list(fields) + evidence)
        ids, paths, tags, probs, labels, errors = columns[:6]
        extra = dict(zip([*fields, *evidence], columns[6:], strict=True))
        written = 0
        for s in range(0, len(ids), chunk_size):
            e = s + chunk_size
            p = probs[s:e]
            batch = {
                "image": paths[s:e],
                "filepath": paths[s:e],
                "sample_id": ids[s:e],
                "tags": [list(t or []) for t in tags[s:e]],
                "fake_prob": p,
                "real_prob": [
                    None if v is None else float(np.float32(1) - np.float32(v)) for v in p
                ],
                "deepfake_label": labels[s:e],
                "deepfake_error": errors[s:e],
            }
            if rule is not None:
                batch["decision"] = list(
                    rule.decide_many(
                        p,
                        extra.get("provenance_synthetic", [None] * len(ids))[s:e],
                        extra.get("provenance_strong", [None] * len(ids))[s:e],
                    )
                )
            for name, vals in extra.items():
                batch[name] = [_plain(v) for v in vals[s:e]]
            yield batch
            written += len(batch["sample_id"])
            if progress is not None:
                progress(written)

    return write_parquet(
        batches(), path, image_column="image", metadata=metadata, overwrite=overwrite,
        features=features,
    )  # fmt: skip


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return json.dumps(value.to_dict(), default=str)
    return value


def path_problem(path: str, overwrite: bool = False) -> str | None:
    """Why a Parquet file cannot be written at `path`, or None."""
    if not path or not str(path).strip():
        return "an output path is required"
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        return (
            f"{path} is a directory; give a file path such as {os.path.join(path, 'kept.parquet')}"
        )
    if os.path.exists(path) and not overwrite:
        return f"{path} already exists (tick overwrite to replace it)"
    parent = os.path.dirname(path)
    probe = parent
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not probe or not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot write to {parent}: not a writable directory"
    return None
