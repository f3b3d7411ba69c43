"""A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` as a source."""

from __future__ import annotations

import os
from collections.abc import Iterator

from curate.sources.base import (
    Batch,
    Source,
    SourceError,
    as_image_feature,
    image_features,
    limited,
    pick_image_column,
    pick_split,
    undecoded,
)


def is_saved_dataset(folder: str) -> bool:
    """Whether `folder` looks like a `save_to_disk` output."""
    return os.path.exists(os.path.join(folder, "state.json")) or os.path.exists(
        os.path.join(folder, "dataset_dict.json")
    )


def saved_source(
    source: str,
    image_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> Source:
    """The saved dataset at `source` (one `split` of a `DatasetDict`)."""
    from datasets import DatasetDict, load_from_disk

    from curate.pipeline.decode import stored_path

    try:
        ds = load_from_disk(source)
    except Exception as exc:
        raise SourceError(f"cannot load the saved dataset {source!r}: {exc}") from None
    if isinstance(ds, DatasetDict):
        split = pick_split(list(ds), split, source)
        ds = ds[split]
    elif split is not None and ds.split is not None and split != str(ds.split):
        raise SourceError(f"{source!r} holds one split ({ds.split}), not {split!r}")
    column = pick_image_column(ds.column_names, image_features(ds.features), image_column, source)
    features = as_image_feature(ds.features, column)
    ds = undecoded(ds, column)

    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        end = len(ds) if stop is None else stop
        for i in range(start, end, batch_size):
            yield ds[i : min(i + batch_size, end)]

    return Source(
        kind="dataset",
        location=stored_path(source),
        image_column=column,
        num_rows=limited(len(ds), limit),
        identity={
            "kind": "dataset",
            "location": os.path.abspath(source),
            "split": split,
            "fingerprint": ds._fingerprint,
        },
        features=features,
        _read=read,
    )
