"""`resolve_source`: what a SOURCE string is (an image, a folder, Parquet, WebDataset tar
shards, a saved dataset, a Hub dataset), decided once, for every front end."""

from __future__ import annotations

import difflib
import os

from curate.sources.base import Source, SourceError
from curate.sources.files import IMAGE_EXTENSIONS, folder_source, image_source, list_images
from curate.sources.hub import hub_offline, hub_source, looks_like_hub_name
from curate.sources.parquet import PARQUET_EXTENSIONS, is_glob, parquet_paths, parquet_source
from curate.sources.saved import is_saved_dataset, saved_source
from curate.sources.webdataset import shard_paths, webdataset_source


def resolve_source(
    source: str | os.PathLike,
    *,
    image_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    config: str | None = None,
    revision: str | None = None,
    max_file_bytes: int | None = None,
    image_member: str | None = None,
) -> Source:
    """Work out what `source` is and return a `Source` that reads it in a stable order.

    `image_column=None` picks "image", else the only image-typed column. `split` picks a split
    of a saved `DatasetDict` or Hub dataset (`config` / `revision` are for Hub datasets);
    `limit` keeps only the first rows; `max_file_bytes` caps the image files read (default
    `curate.pipeline.decode.DEFAULT_MAX_FILE_BYTES`). A SOURCE that is not on disk goes to the
    Hub only when it reads as `user/name` and the Hub is not offline. Tar shards (`.tar`,
    `.tar.gz`, `.tgz`: one, a brace pattern `{00000..00499}`, a glob, or a folder of them with
    no images) are a WebDataset source; `image_member` picks their image member's extension.
    Raises `SourceError` with a one-line message."""
    if limit is not None and limit < 1:
        raise SourceError(f"--limit must be at least 1, got {limit}")
    source = os.fspath(source)
    shards = None if os.path.isdir(source) else shard_paths(source)
    if shards:
        return webdataset_source(
            source, image_member=image_member, image_column=image_column, limit=limit, paths=shards
        )
    if (is_glob(source) and not os.path.exists(source)) or (
        os.path.isfile(source) and source.lower().endswith(PARQUET_EXTENSIONS)
    ):
        return parquet_source(source, image_column, limit)
    if os.path.isfile(source):
        return image_source(source, image_column or "image", max_file_bytes)
    if os.path.isdir(source):
        if is_saved_dataset(source):
            return saved_source(source, image_column, split, limit)
        images = list_images(source)
        if images:
            return folder_source(
                source, image_column or "image", limit, max_file_bytes, names=images
            )
        if parquet_paths(source):
            return parquet_source(source, image_column, limit)
        shards = shard_paths(source)
        if shards:
            return webdataset_source(
                source,
                image_member=image_member,
                image_column=image_column,
                limit=limit,
                paths=shards,
            )
        raise SourceError(
            f"no images found in {source!r} (looked for {' '.join(IMAGE_EXTENSIONS)}, "
            "recursively), no Parquet files and no tar shards either"
        )
    if os.path.lexists(source):
        raise SourceError(_not_readable(source))
    if looks_like_hub_name(source):
        if hub_offline():
            raise SourceError(
                f"{source} does not exist here, and the Hugging Face Hub is offline "
                "(HF_HUB_OFFLINE is set), so it was not looked for there"
            )
        return hub_source(source, image_column, split, limit, config, revision)
    raise SourceError(f"{source} does not exist{_did_you_mean(source)}")


def _not_readable(source: str) -> str:
    from curate.pipeline.decode import not_a_file

    if not os.path.exists(source):  # a link to nothing, or to itself
        try:
            os.stat(source)
        except OSError as exc:
            return f"{source} is a symbolic link that leads nowhere ({exc.strerror})"
    try:
        why = not_a_file(source, os.stat(source).st_mode)
    except OSError as exc:
        return f"cannot read {source}: {exc.strerror or exc}"
    return f"{source} is {why or 'neither a regular file nor a folder'}"


def _did_you_mean(source: str) -> str:
    parent, name = os.path.split(source.rstrip("/\\"))
    try:
        near = difflib.get_close_matches(name, os.listdir(parent or "."), n=1, cutoff=0.75)
    except OSError:
        return ""
    return f" (did you mean {os.path.join(parent, near[0])}?)" if near else ""
