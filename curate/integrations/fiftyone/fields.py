"""The sample fields the FiftyOne adapter writes: their names, FiftyOne types and checks.

Names and value types come from the column contract (`curate.schema`); the two fields of
FiftyOne's own type are `Classification`s: `deepfake` (the scorer's label, Fake at fake_prob >= 0.5)
and `deepfake_decision` (the outcome of the last decision rule applied: keep, remove, review or
unscored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from curate import schema

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection

INFO_KEY = "curate"  # dataset.info[INFO_KEY][prob_field]: how those scores were made and used
DECISION_KEY = "decision"  # ...[prob_field][DECISION_KEY]: the rule last applied to them
PROB_FIELD = schema.FAKE_PROB
LABEL_FIELD = "deepfake"  # fo.Classification: the scorer's label, with its probability
ERROR_FIELD = schema.ERROR
# fo.Classification: the outcome (`curate.filtering.OUTCOMES`) of the last rule applied, so a
# tile shows the decision, whatever threshold made it (the `deepfake` label is always the 0.5 cut).
DECISION_FIELD = "deepfake_decision"
# An ensemble's per-member probabilities (list of floats, in `curate.members` order).
MEMBERS_FIELD = schema.MEMBER_PROBS
# Written by `score_samples` when the scorer has provenance on; exported beside the scores.
PROVENANCE_FIELDS = (*schema.PROVENANCE_COLUMNS, schema.PROVENANCE_WATERMARK)
BUILTIN_FIELDS = ("id", "filepath", "tags", "metadata", "created_at", "last_modified_at")
# The three outputs a user may rename, and the contract column each one holds.
OUTPUT_COLUMNS = {"prob": schema.FAKE_PROB, "label": schema.LABEL, "error": schema.ERROR}
CLASSIFICATION_KINDS = ("label", "decision")


class FieldConflictError(ValueError):
    """An output field already exists with another type; the message says which."""


def field_type(column: str) -> type:
    """The FiftyOne field class that holds a curate column (from `schema.COLUMN_TYPES`)."""
    return field_type_of(schema.COLUMN_TYPES[column])


def field_type_of(value_type: str) -> type:
    """The FiftyOne field class for one of the contract's value types ("float32", ...)."""
    import fiftyone as fo

    return {"float32": fo.FloatField, "string": fo.StringField, "bool": fo.BooleanField}[value_type]


def _expected(kind: str) -> tuple[type, dict, str]:
    """(field class, its add_sample_field kwargs, how to name it) for an output `kind`: "prob",
    "label", "error", "decision", or a column name of the contract (provenance, members)."""
    import fiftyone as fo

    if kind in CLASSIFICATION_KINDS:
        return (
            fo.EmbeddedDocumentField,
            {"embedded_doc_type": fo.Classification},
            "Classification",
        )
    if kind in schema.LIST_COLUMN_TYPES:
        element = field_type_of(schema.LIST_COLUMN_TYPES[kind])
        return fo.ListField, {"subfield": element}, f"ListField({element.__name__})"
    ftype = field_type(OUTPUT_COLUMNS.get(kind, kind))
    return ftype, {}, ftype.__name__


def field_problem(samples: SampleCollection, name: str, kind: str) -> str | None:
    """Why `name` cannot hold output of `kind` ("prob", "label", "error", "decision", or a
    contract column name), or None."""
    import fiftyone as fo

    if not name or not name.strip():
        return "field name must not be empty"
    if name.startswith("_") or "." in name or "$" in name:
        return f"{name!r} is not a usable top-level field name (no leading '_', '.' or '$')"
    if name in BUILTIN_FIELDS:
        return f"{name!r} is a built-in sample field; pick another name"
    existing = samples._dataset.get_field_schema().get(name)
    if existing is None:
        return None
    ftype, kwargs, want = _expected(kind)
    ok = isinstance(existing, ftype)
    if ok and "embedded_doc_type" in kwargs:
        ok = existing.document_type is fo.Classification
    if ok and "subfield" in kwargs:
        ok = isinstance(existing.field, kwargs["subfield"])
    if ok:
        return None
    have = type(existing).__name__
    if isinstance(existing, fo.EmbeddedDocumentField):
        have = existing.document_type.__name__
    return f"field {name!r} already exists as {have}, not {want}; pick another name"


def check_fields(
    samples: SampleCollection,
    prob_field: str = PROB_FIELD,
    label_field: str = LABEL_FIELD,
    error_field: str = ERROR_FIELD,
    extra_columns: Sequence[str] = (),
) -> None:
    """Raise `FieldConflictError` if an output field exists with another type, or if two of
    them share a name; declare the missing ones on the dataset otherwise. `extra_columns`
    (provenance columns, an ensemble's members) are fields of their own name."""
    names = {"prob": prob_field, "label": label_field, "error": error_field}
    names.update({c: c for c in extra_columns})
    if len(set(names.values())) != len(names):
        raise FieldConflictError(
            f"the score, label and error fields must be three different names (and not a "
            f"provenance or member field's), got {names}"
        )
    for kind, name in names.items():
        problem = field_problem(samples, name, kind)
        if problem:
            raise FieldConflictError(problem)
    dataset = samples._dataset
    for kind, name in names.items():
        declare(dataset, name, kind)


def declare(dataset, name: str, kind: str) -> None:
    """Add the field `name` for output of `kind` to the dataset unless it has it."""
    if not dataset.has_sample_field(name):
        ftype, kwargs, _ = _expected(kind)
        dataset.add_sample_field(name, ftype, **kwargs)
