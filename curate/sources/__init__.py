"""Resolve what a user points `curate score` at into a stream of batches, in a stable order.

A SOURCE is one of: a single image file; a folder of images (recursive; .jpg .jpeg .png .webp
.bmp .gif .tif .tiff, hidden files and folders skipped, sorted by relative path); Parquet
file(s) or a glob or a folder of them, with an image column; a directory written by
`Dataset.save_to_disk` / `DatasetDict.save_to_disk`; or a Hugging Face Hub dataset name (with a
split). Batches are dicts of column lists; the image column holds `{"bytes", "path"}` dicts
(or whatever the source stores), which both the scorer and `curate.io.parquet` accept. A source
can start at any row, so an interrupted run resumes without re-reading what it has done.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
PARQUET_EXTENSIONS = (".parquet", ".pq")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class SourceError(ValueError):
    """A source that cannot be read as asked; the message is one line a user can act on."""


Batch = dict[str, list]


@dataclass
class Source:
    """A resolved SOURCE: what it is, how many rows, and how to read it from any row."""

    kind: str  # "image" | "folder" | "parquet" | "dataset" | "hub"
    location: str
    image_column: str
    num_rows: int | None  # None when unknown (a streamed Hub dataset without split sizes)
    identity: dict[str, Any]  # what identifies the data, for resuming (see `fingerprint`)
    features: Any = None  # datasets.Features of the source columns, when known
    _read: Callable[[int, int | None, int], Iterator[Batch]] = field(repr=False, default=None)

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Batch]:
        """Batches of up to `batch_size` rows from row `start` to the end (or the limit)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        stop = self.num_rows
        if stop is not None and start >= stop:
            return iter(())
        return self._read(start, stop, batch_size)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()


def _limited(n: int | None, limit: int | None) -> int | None:
    if limit is None:
        return n
    return limit if n is None else min(n, limit)


def _read_file_struct(path: str, name: str) -> dict[str, Any]:
    """`{"bytes", "path"}` for a file; unreadable files keep their absolute path and null
    bytes, so the scorer reports why (the row is not lost)."""
    try:
        with open(path, "rb") as f:
            return {"bytes": f.read(), "path": name}
    except OSError:
        return {"bytes": None, "path": path}


def list_images(folder: str) -> list[str]:
    """Image files under `folder`, recursive, hidden entries skipped, sorted by relative path."""
    found = []
    seen = {os.path.realpath(folder)}
    for root, dirs, files in os.walk(folder, followlinks=True):
        kept = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(root, d))
            # Symlinked folders are followed once: a link back up the tree is not a loop.
            if not d.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(d)
        dirs[:] = kept
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(found, key=lambda p: p.replace(os.sep, "/"))


def _file_source(
    kind: str, base: str, names: list[str], image_column: str, limit: int | None
) -> Source:
    from datasets import Features, Image

    stats = []
    for n in names:
        try:
            st = os.stat(os.path.join(base, n))
            stats.append([n, st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append([n, None, None])
    total = _limited(len(names), limit)

    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        end = len(names) if stop is None else stop
        for i in range(start, end, batch_size):
            chunk = names[i : min(i + batch_size, end)]
            # Paths are stored relative to the folder: the file stays meaningful elsewhere.
            yield {
                image_column: [
                    _read_file_struct(os.path.join(base, n), n.replace(os.sep, "/")) for n in chunk
                ]
            }

    return Source(
        kind=kind,
        location=os.path.join(base, names[0]) if kind == "image" else base,
        image_column=image_column,
        num_rows=total,
        identity={"kind": kind, "location": base, "files": stats},
        features=Features({image_column: Image()}),
        _read=read,
    )


def _parquet_paths(source: str) -> list[str]:
    if any(c in source for c in "*?["):
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


def _pick_image_column(
    columns: list[str], image_types: list[str], image_column: str | None, where: str
) -> str:
    if image_column is not None:
        if image_column not in columns:
            raise SourceError(
                f"{where} has no column {image_column!r} (columns: {', '.join(columns)}); "
                "pass --image-column NAME"
            )
        return image_column
    if "image" in columns:
        return "image"
    if len(image_types) == 1:
        return image_types[0]
    raise SourceError(
        f"cannot tell which column of {where} holds the images (columns: {', '.join(columns)}); "
        "pass --image-column NAME"
    )


def _parquet_source(source: str, image_column: str | None, limit: int | None) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Image

    paths = _parquet_paths(source)
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
        files.append((p, [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]))
        files[-1] += ([os.path.abspath(p), st.st_size, st.st_mtime_ns],)
    try:
        features = Features.from_arrow_schema(schema)
    except Exception:  # a type `datasets` has no feature for: fall back to Arrow types
        features = None
    image_like = [
        f.name
        for f in schema
        if _is_image_type(f.type) or (features is not None and isinstance(features[f.name], Image))
    ]
    column = _pick_image_column(schema.names, image_like, image_column, source)
    if features is not None and not isinstance(features[column], Image):
        features[column] = Image()
    total = _limited(sum(sum(groups) for _, groups, _ in files), limit)

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
        location=source,
        image_column=column,
        num_rows=total,
        identity={"kind": "parquet", "files": [f[2] for f in files]},
        features=features,
        _read=read,
    )


def _undecoded(dataset, column: str):
    from datasets import Image

    feature = dataset.features[column] if dataset.features else None
    if isinstance(feature, Image) and feature.decode:
        return dataset.cast_column(column, Image(decode=False))
    return dataset


def _pick_split(splits: list[str], split: str | None, where: str) -> str:
    if split is None:
        if len(splits) == 1:
            return splits[0]
        raise SourceError(f"{where} has splits {', '.join(splits)}; pass --split NAME")
    if split not in splits:
        raise SourceError(f"{where} has no split {split!r} (splits: {', '.join(splits)})")
    return split


def _image_features(features) -> list[str]:
    from datasets import Image

    def image_like(f) -> bool:  # an Image feature, or the same struct without the metadata
        return isinstance(f, Image) or (isinstance(f, dict) and set(f) == {"bytes", "path"})

    return [n for n, f in (features or {}).items() if image_like(f)]


def _as_image_feature(features, column: str):
    from datasets import Features, Image

    features = Features(features.copy())
    if not isinstance(features[column], Image):
        features[column] = Image()
    return features


def _disk_source(
    source: str, image_column: str | None, split: str | None, limit: int | None
) -> Source:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(source)
    except Exception as exc:
        raise SourceError(f"cannot load the saved dataset {source!r}: {exc}") from None
    if isinstance(ds, DatasetDict):
        split = _pick_split(list(ds), split, source)
        ds = ds[split]
    elif split is not None and ds.split is not None and split != str(ds.split):
        raise SourceError(f"{source!r} holds one split ({ds.split}), not {split!r}")
    column = _pick_image_column(ds.column_names, _image_features(ds.features), image_column, source)
    features = _as_image_feature(ds.features, column)
    ds = _undecoded(ds, column)
    total = _limited(len(ds), limit)

    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        end = len(ds) if stop is None else stop
        for i in range(start, end, batch_size):
            yield ds[i : min(i + batch_size, end)]

    return Source(
        kind="dataset",
        location=source,
        image_column=column,
        num_rows=total,
        identity={
            "kind": "dataset",
            "location": os.path.abspath(source),
            "split": split,
            "fingerprint": ds._fingerprint,
        },
        features=features,
        _read=read,
    )


def _hub_source(
    source: str,
    image_column: str | None,
    split: str | None,
    limit: int | None,
    config: str | None,
    revision: str | None,
) -> Source:
    import datasets

    split = split or "train"
    try:
        ds = datasets.load_dataset(source, config, split=split, streaming=True, revision=revision)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceError(
            f"{source!r} is not a file or folder here, and loading it as a Hugging Face Hub "
            f"dataset failed: {msg}"
        ) from None
    features = ds.features
    columns = list(features) if features else []
    if features is None:
        raise SourceError(f"the Hub dataset {source!r} does not declare its columns")
    column = _pick_image_column(columns, _image_features(features), image_column, source)
    ds = _undecoded(ds, column)
    features = _as_image_feature(features, column)
    num_rows = None
    info_splits = getattr(ds.info, "splits", None) or {}
    if split in info_splits and info_splits[split].num_examples:
        num_rows = info_splits[split].num_examples
    total = _limited(num_rows, limit)

    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        stream = ds.skip(start) if start else ds
        if stop is not None:
            stream = stream.take(stop - start)
        yield from stream.iter(batch_size=batch_size)

    return Source(
        kind="hub",
        location=source,
        image_column=column,
        num_rows=total,
        identity={
            "kind": "hub",
            "name": source,
            "config": config,
            "split": split,
            "revision": revision,
        },
        features=features,
        _read=read,
    )


def resolve_source(
    source: str | os.PathLike,
    *,
    image_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    config: str | None = None,
    revision: str | None = None,
) -> Source:
    """Work out what `source` is and return a `Source` that reads it in a stable order.

    `image_column=None` picks "image", else the only image-typed column. `split` picks a split
    of a saved `DatasetDict` or Hub dataset (`config` / `revision` are for Hub datasets);
    `limit` keeps only the first rows. Raises `SourceError` with a one-line message."""
    if limit is not None and limit < 1:
        raise SourceError(f"--limit must be at least 1, got {limit}")
    source = os.fspath(source)
    is_glob = any(c in source for c in "*?[") and not os.path.exists(source)
    if is_glob or (os.path.isfile(source) and source.lower().endswith(PARQUET_EXTENSIONS)):
        return _parquet_source(source, image_column, limit)
    if os.path.isfile(source):
        name = os.path.basename(source)
        base = os.path.dirname(os.path.abspath(source))
        return _file_source("image", base, [name], image_column or "image", limit)
    if os.path.isdir(source):
        if os.path.exists(os.path.join(source, "state.json")) or os.path.exists(
            os.path.join(source, "dataset_dict.json")
        ):
            return _disk_source(source, image_column, split, limit)
        images = list_images(source)
        if images:
            return _file_source(
                "folder", os.path.abspath(source), images, image_column or "image", limit
            )
        if _parquet_paths(source):
            return _parquet_source(source, image_column, limit)
        raise SourceError(
            f"no images found in {source!r} (looked for {' '.join(IMAGE_EXTENSIONS)}, "
            "recursively) and no Parquet files either"
        )
    if os.path.exists(source):
        raise SourceError(f"{source!r} is neither a regular file nor a folder")
    if _HUB_NAME.match(source) and ("/" in source or not os.path.splitext(source)[1]):
        return _hub_source(source, image_column, split, limit, config, revision)
    raise SourceError(f"{source!r} does not exist")
