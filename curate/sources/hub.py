"""A Hugging Face Hub dataset as a source, streamed (nothing is downloaded up front), and the
rule for when a SOURCE that is not on disk is worth asking the Hub about."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from curate.sources.base import (
    Batch,
    Source,
    SourceError,
    as_image_feature,
    image_features,
    limited,
    pick_image_column,
    undecoded,
)

# `user/name` (or `org/name`): what a Hub dataset id looks like. Bare names ("mnist") are
# legacy aliases; a bare word is far more often a mistyped folder.
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_TRUE = ("1", "ON", "YES", "TRUE")


def looks_like_hub_name(source: str) -> bool:
    """Whether `source` reads as a Hub dataset id (`user/name`) rather than a local path: not
    `./x`, `/x`, `~/x`, `x.jpg`, nor `dir/x` where `dir` is a folder here."""
    if not _HUB_NAME.match(source) or source.startswith((".", "~")):
        return False
    owner, name = source.split("/")
    if os.path.isdir(owner):
        return False  # `images/cats` beside an `images` folder is a path, mistyped
    return os.path.splitext(name)[1].lower() not in (".jpg", ".jpeg", ".png", ".parquet", ".pq")


def hub_offline() -> bool:
    """Whether this process may not reach the Hub (`HF_HUB_OFFLINE`, `HF_DATASETS_OFFLINE`)."""
    if any(
        os.environ.get(v, "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    ):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return True  # no client, no Hub
    return bool(constants.HF_HUB_OFFLINE)


def hub_source(
    source: str,
    image_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    config: str | None = None,
    revision: str | None = None,
) -> Source:
    """The Hub dataset `source` (`config`, `split`, `revision`), streamed; resuming skips the
    rows already done."""
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
    if features is None:
        raise SourceError(f"the Hub dataset {source!r} does not declare its columns")
    column = pick_image_column(list(features), image_features(features), image_column, source)
    ds = undecoded(ds, column)
    features = as_image_feature(features, column)
    num_rows = None
    info_splits = getattr(ds.info, "splits", None) or {}
    if split in info_splits and info_splits[split].num_examples:
        num_rows = info_splits[split].num_examples

    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        stream = ds.skip(start) if start else ds
        if stop is not None:
            stream = stream.take(stop - start)
        yield from stream.iter(batch_size=batch_size)

    return Source(
        kind="hub",
        location=source,
        image_column=column,
        num_rows=limited(num_rows, limit),
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
