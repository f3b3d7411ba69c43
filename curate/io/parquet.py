"""Parquet export that loses nothing: images embedded as bytes, atomic writes, streaming.

The image column is written in the Hugging Face layout `struct<bytes: binary, path: string>`
with the encoded file bytes embedded (never just a path), and the file carries the
`datasets` features in its schema metadata, so `datasets.load_dataset("parquet", ...)` gives
an `Image` feature back and pyarrow / DuckDB see plain bytes. Scoring settings (model,
revision, dtype, threshold, curate version) go in the schema metadata under `curate.*` keys.
A file appears only when complete: it is written beside its destination and renamed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.io.atomic import AtomicFile
from curate.schema import (
    METADATA_PREFIX,
    SCORE_COLUMNS,
    arrow_type,
    image_arrow_type,
    is_curate_column,
    metadata_entries,
)

if TYPE_CHECKING:
    from datasets import Features

IMAGE_TYPE = image_arrow_type()
# Hugging Face writes image datasets with 100-row row groups: small enough that a reader
# holds few images at a time, large enough that the footer and per-group overhead stay small.
DEFAULT_ROW_GROUP_SIZE = 100
# A row group is also cut once its buffered bytes pass this, whatever the row count.
MAX_ROW_GROUP_BYTES = 128 * 1024 * 1024


class ParquetExportError(ValueError):
    """Data that cannot be written as asked; the message is one line a user can act on."""


def image_struct(value: Any) -> dict[str, Any] | None:
    """Any image form `curate.pipeline.decode` accepts, as `{"bytes", "path"}` with the bytes embedded.

    Paths (alone or in a dict without bytes) are read from disk; PIL images opened from a file
    keep that file's bytes, other PIL images and arrays are encoded as `datasets` does (PNG, or
    TIFF for what PNG cannot hold). A file that cannot be read keeps its path and null bytes:
    the row survives and its score column says why it has no score."""
    if value is None:
        return None
    from datasets.features.image import Image as ImageFeature

    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        enc = {"bytes": bytes(data) if data is not None else None, "path": path}
    else:
        try:
            enc = ImageFeature().encode_example(value)
        except (ValueError, TypeError, OSError) as exc:
            raise ParquetExportError(
                f"cannot store {type(value).__name__} as an image: {exc}"
            ) from None
    # Regular files only: a FIFO or a device named like an image would block or never end.
    if enc.get("bytes") is None and enc.get("path") and os.path.isfile(enc["path"]):
        try:
            with open(enc["path"], "rb") as f:
                enc = {"bytes": f.read(), "path": enc["path"]}
        except OSError:
            pass
    return {"bytes": enc.get("bytes"), "path": enc.get("path")}


def curate_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `curate.*` entries of a Parquet file's schema metadata."""
    raw = pq.read_schema(path).metadata or {}
    return {
        k.decode(): v.decode() for k, v in raw.items() if k.decode().startswith(METADATA_PREFIX)
    }


def _hf_metadata(schema: pa.Schema, image_column: str | None, features: Features | None) -> bytes:
    from datasets import Features, Image

    inferred = Features.from_arrow_schema(schema)
    if features is not None:
        for name, feature in features.items():
            if name in inferred:
                inferred[name] = feature
    if image_column is not None and image_column in inferred:
        feature = inferred[image_column]
        inferred[image_column] = feature if isinstance(feature, Image) else Image()
    return json.dumps({"info": {"features": inferred.to_dict()}}).encode()


class AtomicParquetWriter(AtomicFile):
    """Stream record batches into `path` through a temporary file beside it.

    Rows are buffered into row groups of `row_group_size` rows (or `MAX_ROW_GROUP_BYTES`);
    `close()` flushes, fsyncs and renames; `abort()` (or an exception inside `with`) removes
    the temporary file and leaves `path` as it was (see `curate.io.atomic.AtomicFile`)."""

    what = "Parquet file"

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema,
        *,
        overwrite: bool = False,
        row_group_size: int | None = None,
    ) -> None:
        self.row_group_size = int(row_group_size or DEFAULT_ROW_GROUP_SIZE)
        if self.row_group_size < 1:
            raise ValueError(f"row_group_size must be at least 1, got {row_group_size}")
        super().__init__(path, overwrite=overwrite)
        self.schema = schema
        self._writer = pq.ParquetWriter(self.file, schema, compression="zstd")
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self.rows = 0

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if not table.schema.equals(self.schema, check_metadata=False):
            table = table.select(self.schema.names).cast(self.schema)
        for rb in table.to_batches():
            self._pending.append(rb)
            self._pending_rows += rb.num_rows
            self._pending_bytes += rb.nbytes
            self.rows += rb.num_rows
            if self._pending_rows >= self.row_group_size or (
                self._pending_bytes >= MAX_ROW_GROUP_BYTES
            ):
                self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        cut = table.num_rows if final else table.num_rows - table.num_rows % self.row_group_size
        if self._pending_bytes >= MAX_ROW_GROUP_BYTES:
            cut = table.num_rows
        self._writer.write_table(table.slice(0, cut), row_group_size=self.row_group_size)
        rest = table.slice(cut).combine_chunks().to_batches() if cut < table.num_rows else []
        self._pending = list(rest)
        self._pending_rows = sum(b.num_rows for b in rest)
        self._pending_bytes = sum(b.nbytes for b in rest)

    def _finish(self) -> None:
        self._flush(final=True)
        self._writer.close()

    def _discard(self) -> None:
        self._writer.close()

    def close(self) -> int:
        """Finish the file and move it into place; returns the number of rows written."""
        super().close()
        return self.rows


def build_schema(
    columns: Mapping[str, Sequence] | pa.Table | None,
    *,
    image_column: str | None = "image",
    features: Features | None = None,
    metadata: Mapping[str, str] | None = None,
) -> pa.Schema:
    """The output schema: `columns`' types (or `features`'), the image column as the HF
    struct, score columns with their contract types, and the metadata (HF features + ours)."""
    fields: dict[str, pa.DataType] = {}
    if features is not None:
        fields.update({f.name: f.type for f in features.arrow_schema})
    if isinstance(columns, pa.Table):
        for field in columns.schema:
            fields.setdefault(field.name, field.type)
    elif columns is not None:
        for name, values in columns.items():
            if name in fields or name == image_column or is_curate_column(name):
                fields.setdefault(name, pa.null())
                continue
            try:
                fields[name] = pa.array(list(values)).type
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ParquetExportError(f"cannot store column {name!r}: {exc}") from None
    if image_column is not None:
        fields[image_column] = IMAGE_TYPE
    for name in fields:
        if is_curate_column(name):
            fields[name] = arrow_type(name)
    schema = pa.schema(list(fields.items()))
    meta = {b"huggingface": _hf_metadata(schema, image_column, features)}
    meta.update({k.encode(): v.encode() for k, v in metadata_entries(metadata or {}).items()})
    return schema.with_metadata(meta)


def to_table(
    batch: Mapping[str, Sequence], schema: pa.Schema, image_column: str | None
) -> pa.Table:
    arrays = []
    n = None
    for field in schema:
        if field.name not in batch:
            raise ParquetExportError(
                f"batch has no column {field.name!r} (it has {sorted(batch)}); every batch must "
                "have the same columns"
            )
        values = list(batch[field.name])
        if n is None:
            n = len(values)
        elif len(values) != n:
            raise ParquetExportError(
                f"column {field.name!r} has {len(values)} values, other columns have {n}"
            )
        if field.name == image_column:
            values = [image_struct(v) for v in values]
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            if pa.types.is_null(field.type):
                raise ParquetExportError(
                    f"column {field.name!r} was all null in the first batch and has values now; "
                    "pass features=... so its type is known up front"
                ) from None
            raise ParquetExportError(f"cannot store column {field.name!r}: {exc}") from None
    extra = set(batch) - set(schema.names)
    if extra:
        raise ParquetExportError(
            f"batch has columns {sorted(extra)} that the first batch did not; every batch must "
            "have the same columns"
        )
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(
    batches: Iterable[Mapping[str, Sequence]],
    path: str | os.PathLike,
    *,
    image_column: str | None = "image",
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
    row_group_size: int | None = None,
    features: Features | None = None,
) -> int:
    """Write column-dict batches (source columns merged with scorer output) to `path`.

    Values in `image_column` may be any form `curate.pipeline.decode` accepts; they are stored as the
    HF `struct<bytes, path>` with the file bytes embedded. `features` (a `datasets.Features`)
    fixes column types up front and carries through to `load_dataset` (class labels, ...);
    otherwise types come from the first batch. Streams batch by batch; atomic (temp file
    beside `path`, then rename); refuses an existing `path` unless `overwrite` with
    `FileExistsError`. Returns the number of rows written."""
    it: Iterator[Mapping[str, Sequence]] = iter(batches)
    first = next(it, None)
    if first is None:
        columns = ((image_column,) if image_column else ()) + SCORE_COLUMNS
        empty = {c: [] for c in columns}
        if features is not None:
            empty = {name: [] for name in features}
        first = empty
    if image_column is not None and image_column not in first:
        raise ParquetExportError(
            f"image column {image_column!r} not in the data (columns: {sorted(first)}); pass "
            "image_column=... (or None for no image column)"
        )
    schema = build_schema(first, image_column=image_column, features=features, metadata=metadata)
    with AtomicParquetWriter(
        path, schema, overwrite=overwrite, row_group_size=row_group_size
    ) as writer:
        writer.write(to_table(first, schema, image_column))
        for batch in it:
            writer.write(to_table(batch, schema, image_column))
    return writer.rows
