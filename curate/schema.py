"""The column contract: every name and type curate writes, in one place.

Each front end (datasets, Parquet, Ray, FiftyOne) takes its column names and types from here,
so one run's outputs carry the same columns with the same types everywhere. The types are
plain strings ("float32", "string", "bool") that `arrow_type`, `datasets_features` and the
FiftyOne adapter each translate; this module imports neither pyarrow nor datasets itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# -- score columns (what `DeepfakeScorer` returns) --------------------------------------------
FAKE_PROB = "fake_prob"
REAL_PROB = "real_prob"
LABEL = "deepfake_label"
ERROR = "deepfake_error"
FAKE_LOGIT = "fake_logit"
REAL_LOGIT = "real_logit"
MEMBER_PROBS = "member_fake_probs"
DECISION = "decision"  # keep / remove / review / unscored, written by `curate filter` exports

SCORE_COLUMNS = (FAKE_PROB, REAL_PROB, LABEL, ERROR)
LOGIT_COLUMNS = (FAKE_LOGIT, REAL_LOGIT)

# The two values of `deepfake_label`.
FAKE, REAL = "Fake", "Real"
# `deepfake_label` is the decision at this cut on the (calibrated) `fake_prob`: Fake when
# fake_prob >= 0.5, the same rule `DecisionRule()` applies by default, so a row's label and
# its default keep/remove outcome always agree.
LABEL_THRESHOLD = 0.5

# -- provenance columns (`DeepfakeScorer(provenance=...)`) ------------------------------------
PROVENANCE = "provenance"
PROVENANCE_SYNTHETIC = "provenance_synthetic"
PROVENANCE_STRONG = "provenance_strong"
PROVENANCE_DETAIL = "provenance_detail"
PROVENANCE_WATERMARK = "provenance_watermark"
PROVENANCE_COLUMNS = (PROVENANCE, PROVENANCE_SYNTHETIC, PROVENANCE_STRONG, PROVENANCE_DETAIL)

# Value type of every column curate writes.
COLUMN_TYPES: dict[str, str] = {
    FAKE_PROB: "float32",
    REAL_PROB: "float32",
    LABEL: "string",
    ERROR: "string",
    FAKE_LOGIT: "float32",
    REAL_LOGIT: "float32",
    DECISION: "string",
    PROVENANCE: "string",
    PROVENANCE_SYNTHETIC: "bool",
    PROVENANCE_STRONG: "bool",
    PROVENANCE_DETAIL: "string",
    PROVENANCE_WATERMARK: "float32",
}
# Columns whose values are lists of this element type.
LIST_COLUMN_TYPES: dict[str, str] = {MEMBER_PROBS: "float32"}

# -- the image column ----------------------------------------------------------------------------
IMAGE = "image"  # default image column
IMAGE_FIELDS = ("bytes", "path")  # the Hugging Face `Image` storage struct

# -- Parquet schema metadata ---------------------------------------------------------------------
METADATA_PREFIX = "curate."


def metadata_entries(values: Mapping[str, Any]) -> dict[str, str]:
    """Settings as Parquet schema-metadata entries: keys under `curate.` (added where missing),
    values that are not strings as JSON."""
    out = {}
    for key, value in values.items():
        name = key if key.startswith(METADATA_PREFIX) else METADATA_PREFIX + key
        out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def label_for(fake_prob: float) -> str:
    """`deepfake_label` of a scored row: "Fake" when fake_prob >= 0.5, else "Real"."""
    return FAKE if fake_prob >= LABEL_THRESHOLD else REAL


def is_curate_column(name: str) -> bool:
    return name in COLUMN_TYPES or name in LIST_COLUMN_TYPES


def arrow_type(name: str):
    """The pyarrow type of a curate column."""
    import pyarrow as pa

    if name in LIST_COLUMN_TYPES:
        return pa.list_(pa.from_numpy_dtype(_numpy(LIST_COLUMN_TYPES[name])))
    typ = COLUMN_TYPES[name]
    return pa.string() if typ == "string" else pa.from_numpy_dtype(_numpy(typ))


def image_arrow_type():
    """`struct<bytes: binary, path: string>`: how `datasets` stores an `Image` column."""
    import pyarrow as pa

    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def arrow_types(columns: Iterable[str]) -> dict:
    return {c: arrow_type(c) for c in columns}


def datasets_features(columns: Iterable[str]):
    """`datasets.Features` of curate columns."""
    from datasets import Features, Value

    try:
        from datasets import List
    except ImportError:  # datasets < 4 names it Sequence
        from datasets import Sequence as List

    out = {}
    for c in columns:
        if c in LIST_COLUMN_TYPES:
            out[c] = List(Value(LIST_COLUMN_TYPES[c]))
        else:
            out[c] = Value(COLUMN_TYPES[c])
    return Features(out)


def _numpy(typ: str):
    import numpy as np

    return {"float32": np.float32, "bool": np.bool_}[typ]


class TypedColumn(list):
    """A list of one curate column's values that converts to Arrow with the contract's type.

    pyarrow honours `__arrow_array__` wherever it turns a list into an array (`pa.array`,
    `pa.table`, `datasets`' writer, Ray's blocks), so a batch whose values are all null still
    gets `float32` / `string` columns instead of Arrow's `null` type; `datasets.map` fixes a
    column's type from the first batch it writes, and a null-typed column would reject the
    first real value that follows."""

    __slots__ = ("column",)

    def __init__(self, column: str, values: Iterable = ()) -> None:
        super().__init__(values)
        self.column = column

    def __arrow_array__(self, type=None):
        import pyarrow as pa

        return pa.array(list(self), type=type or arrow_type(self.column))

    def __reduce__(self):
        return (TypedColumn, (self.column, list(self)))
