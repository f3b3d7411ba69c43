"""Image files as a source: one image file, a folder of them (recursive), or a list of paths.

Every entry a folder holds under an image name becomes a row, readable or not: a FIFO, a
socket, a device, a broken link or a link loop named `x.jpg`, a file over `max_file_bytes`,
and every sub-folder that cannot be listed, get a row whose bytes are null, so the scorer
says why (`curate.pipeline.decode`); only regular files are ever opened. Paths are stored
relative to the folder, always as valid UTF-8 (`curate.pipeline.decode.stored_path`: a name
that is not UTF-8 keeps its undecodable bytes as `\\xNN`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from curate.sources.base import Batch, Source, SourceError, limited

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def list_images(folder: str | os.PathLike) -> list[str]:
    """Paths, relative to `folder`, of everything that gets a row: image files (by extension,
    whatever kind of file they turn out to be), and sub-folders that cannot be listed (their
    images are unknown; the row says why). Recursive, hidden entries skipped, symlinked
    folders followed once, sorted by relative path. Raises `SourceError` when `folder`
    itself cannot be listed."""
    folder = os.fspath(folder)
    found = []
    unlisted: list[OSError] = []
    seen = {os.path.realpath(folder)}
    for root, dirs, files in os.walk(folder, followlinks=True, onerror=unlisted.append):
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
    for exc in unlisted:
        rel = os.path.relpath(exc.filename, folder) if exc.filename else os.curdir
        if rel == os.curdir:
            raise SourceError(f"cannot list the folder {folder}: {exc.strerror or exc}")
        found.append(rel)
    return sorted(found, key=lambda p: p.replace(os.sep, "/"))


def read_file_struct(path: str, name: str, max_file_bytes: int | None = None) -> dict[str, Any]:
    """`{"bytes", "path": name}` for a regular file. Anything that cannot be read (not a
    regular file, over `max_file_bytes`, no permission) keeps its absolute path and null
    bytes, so the scorer says why: the row is not lost, and nothing but a regular file is
    opened."""
    from curate.pipeline.decode import DEFAULT_MAX_FILE_BYTES, read_file_bytes, stored_path

    limit = DEFAULT_MAX_FILE_BYTES if max_file_bytes is None else max_file_bytes
    try:
        return {"bytes": read_file_bytes(path, limit), "path": stored_path(name)}
    except OSError:
        return {"bytes": None, "path": stored_path(os.path.abspath(path))}


def files_source(
    kind: str,
    base: str,
    names: Sequence[str],
    image_column: str = "image",
    limit: int | None = None,
    max_file_bytes: int | None = None,
) -> Source:
    """A Source over files `names` under folder `base` ("" for absolute paths): one row each,
    with the image column `{"bytes", "path"}` and the path stored as `names` gives it."""
    from datasets import Features, Image

    from curate.pipeline.decode import stored_path

    names = list(names)
    stats = []
    for n in names:
        try:
            st = os.stat(os.path.join(base, n))
            stats.append([n, st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append([n, None, None])

    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        end = len(names) if stop is None else stop
        for i in range(start, end, batch_size):
            chunk = names[i : min(i + batch_size, end)]
            yield {
                image_column: [
                    read_file_struct(os.path.join(base, n), n.replace(os.sep, "/"), max_file_bytes)
                    for n in chunk
                ]
            }

    if kind == "files":
        location = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more files"
    else:
        location = os.path.join(base, names[0]) if kind == "image" else base
    return Source(
        kind=kind,
        location=stored_path(location),
        image_column=image_column,
        num_rows=limited(len(names), limit),
        identity={"kind": kind, "location": base, "files": stats},
        features=Features({image_column: Image()}),
        _read=read,
    )


def image_source(
    path: str, image_column: str = "image", max_file_bytes: int | None = None
) -> Source:
    """One image file: one row, its path stored as the file's name."""
    base = os.path.dirname(os.path.abspath(path))
    return files_source(
        "image", base, [os.path.basename(path)], image_column, max_file_bytes=max_file_bytes
    )


def folder_source(
    folder: str,
    image_column: str = "image",
    limit: int | None = None,
    max_file_bytes: int | None = None,
    names: Sequence[str] | None = None,
) -> Source:
    """The images of `folder` (`list_images`, unless `names` is given), paths relative to it."""
    names = list_images(folder) if names is None else names
    return files_source(
        "folder", os.path.abspath(folder), names, image_column, limit, max_file_bytes
    )


def path_list_source(
    paths: Sequence[str | os.PathLike],
    image_column: str = "image",
    limit: int | None = None,
    max_file_bytes: int | None = None,
) -> Source:
    """Image files named one by one (in that order), each stored with its path as given."""
    names = [os.fspath(p) for p in paths]
    if not names:
        raise SourceError("no image files given")
    return files_source("files", "", names, image_column, limit, max_file_bytes)
