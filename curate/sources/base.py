"""What a source is, whatever its kind: `Source` (what it is, how many rows, how to read it
from any row), `SourceError`, and the helpers every kind shares (picking the image column and
the split)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Batch = dict[str, list]


class SourceError(ValueError):
    """A source that cannot be read as asked; the message is one line a user can act on."""


@dataclass
class Source:
    """A resolved SOURCE: what it is, how many rows, and how to read it from any row.

    Batches are dicts of column lists; the image column holds `{"bytes", "path"}` dicts (or
    whatever the source stores), which the scorer and `curate.io.parquet` both accept. A
    Source pickles (with cloudpickle, as Ray does), so workers can read rows themselves."""

    kind: str  # "image" | "folder" | "files" | "parquet" | "dataset" | "hub"
    location: str  # for people and metadata: always valid UTF-8 (`stored_path`)
    image_column: str
    num_rows: int | None  # None when unknown (a streamed Hub dataset without split sizes)
    identity: dict[str, Any]  # what identifies the data, for resuming (see `fingerprint`)
    features: Any = None  # datasets.Features of the source columns, when known
    schema: Any = None  # pyarrow.Schema of the source columns, when `features` is unknown
    _read: Callable[[int, int | None, int], Iterator[Batch]] = field(repr=False, default=None)

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Batch]:
        """Batches of up to `batch_size` rows from row `start` to the end (or the limit)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        stop = self.num_rows
        if stop is not None and start >= stop:
            return iter(())
        return self._read(start, stop, batch_size)

    def read(self, start: int, stop: int) -> Batch:
        """Rows `start` to `stop` (exclusive) as one batch."""
        out: Batch = {}
        want = stop - start
        if want <= 0:
            return out
        got = 0
        for batch in self._read(start, stop, want):
            for name, values in batch.items():
                out.setdefault(name, []).extend(values)
            got += len(next(iter(batch.values()), ()))
            if got >= want:
                break
        return out

    def arrow_schema(self):
        """pyarrow types of the source's columns, the image column as the Hugging Face
        `struct<bytes, path>`; None when the source does not declare them."""
        import pyarrow as pa

        from curate.schema import image_arrow_type

        schema = self.schema if self.schema is not None else None
        if schema is None and self.features is not None:
            schema = self.features.arrow_schema
        if schema is None:
            return None
        fields = [
            pa.field(f.name, image_arrow_type()) if f.name == self.image_column else f
            for f in schema
        ]
        return pa.schema(fields)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()


def limited(n: int | None, limit: int | None) -> int | None:
    """Row count `n` cut to `limit` (either may be None: unknown / no limit)."""
    if limit is None:
        return n
    return limit if n is None else min(n, limit)


def pick_image_column(
    columns: list[str], image_types: list[str], image_column: str | None, where: str
) -> str:
    """`image_column` if given (and present), else "image", else the only image-typed column."""
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


def pick_split(splits: list[str], split: str | None, where: str) -> str:
    if split is None:
        if len(splits) == 1:
            return splits[0]
        raise SourceError(f"{where} has splits {', '.join(splits)}; pass --split NAME")
    if split not in splits:
        raise SourceError(f"{where} has no split {split!r} (splits: {', '.join(splits)})")
    return split


def image_features(features) -> list[str]:
    """Names of the `datasets` features that hold images (an `Image`, or its bare struct)."""
    from datasets import Image

    def image_like(f) -> bool:
        return isinstance(f, Image) or (isinstance(f, dict) and set(f) == {"bytes", "path"})

    return [n for n, f in (features or {}).items() if image_like(f)]


def as_image_feature(features, column: str):
    """`features` with `column` an `Image` feature."""
    from datasets import Features, Image

    features = Features(features.copy())
    if not isinstance(features[column], Image):
        features[column] = Image()
    return features


def undecoded(dataset, column: str):
    """`dataset` with its image column left as `{"bytes", "path"}` (the scorer decodes)."""
    from datasets import Image

    feature = dataset.features[column] if dataset.features else None
    if isinstance(feature, Image) and feature.decode:
        return dataset.cast_column(column, Image(decode=False))
    return dataset
