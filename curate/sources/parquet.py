"""Parquet as a source: one file, a glob, or a folder of them, with an image column; read
row group by row group from any row."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

from curate.sources.base import Batch, Source, SourceError, limited, pick_image_column

PARQUET_EXTENSIONS = (".parquet", ".pq")


def is_glob(source: str) -> bool:
    return any(c in source for c in "*?[")


def parquet_paths(source: str) -> list[str]:
    """The Parquet files `source` names: a glob's matches, a folder's files (recursive), or
    the file itself; sorted."""
    if is_glob(source) and not os.path.exists(source):
        paths = sorted(glob.glob(source, recursive=True))
        if not paths:
            raise SourceError(f"no files match {source!r}")
        return paths
    if os.path.isdir(source):
        return sorted(
            os.path.join(root, n)
            for root, _, files in os.walk(source)
            for n in files
            if n.lower().endswith(PARQUET_EXTENSIONS)
        )
    return [source]


def _is_image_type(typ) -> bool:
    import pyarrow as pa

    return pa.types.is_struct(typ) and {typ.field(i).name for i in range(typ.num_fields)} == {
        "bytes",
        "path",
    }


def parquet_source(
    source: str, image_column: str | None = None, limit: int | None = None
) -> Source:
    """Parquet file(s) with an image column (`image_column`, else "image", else the only
    image-typed column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Image

    from curate.pipeline.decode import stored_path

    paths = parquet_paths(source)
    if not paths:
        raise SourceError(f"no Parquet files in {source!r}")
    files = []
    schema = None
    for p in paths:
        try:
            pf = pq.ParquetFile(p)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"cannot read {p} as Parquet: {exc}") from None
        if schema is None:
            schema = pf.schema_arrow
        elif not pf.schema_arrow.equals(schema, check_metadata=False):
            raise SourceError(f"{p} does not have the same columns as {paths[0]}")
        st = os.stat(p)
        groups = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        files.append((p, groups, [os.path.abspath(p), st.st_size, st.st_mtime_ns]))
    try:
        features = Features.from_arrow_schema(schema)
    except Exception:  # a type `datasets` has no feature for: fall back to Arrow types
        features = None
    image_like = [
        f.name
        for f in schema
        if _is_image_type(f.type) or (features is not None and isinstance(features[f.name], Image))
    ]
    column = pick_image_column(schema.names, image_like, image_column, source)
    if features is not None and not isinstance(features[column], Image):
        features[column] = Image()

    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        offset = 0  # index of the current file's first row
        remaining = None if stop is None else stop - start
        for path, groups, _ in files:
            rows = sum(groups)
            if offset + rows <= start:
                offset += rows
                continue
            # Skip whole row groups before `start` without reading them.
            todo, first, row = [], None, offset
            for g, n in enumerate(groups):
                if row + n > start:
                    todo.append(g)
                    first = row if first is None else first
                row += n
            drop = max(0, start - first)
            for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_size, row_groups=todo):
                if drop:
                    cut = min(drop, rb.num_rows)
                    rb, drop = rb.slice(cut), drop - cut
                if remaining is not None:
                    rb = rb.slice(0, remaining)
                    remaining -= rb.num_rows
                if rb.num_rows:
                    yield {name: rb.column(name).to_pylist() for name in rb.schema.names}
                if remaining == 0:
                    return
            offset += rows

    return Source(
        kind="parquet",
        location=stored_path(source),
        image_column=column,
        num_rows=limited(sum(sum(groups) for _, groups, _ in files), limit),
        identity={"kind": "parquet", "files": [f[2] for f in files]},
        features=features,
        schema=schema.remove_metadata(),
        _read=read,
    )
