"""Checks shared by the use cases, run before any work starts: scoring options (device, dtype,
batch size) and the Parquet files a job will write."""

from __future__ import annotations

import os

from curate.sources import PARQUET_EXTENSIONS


class RequestError(ValueError):
    """A request that cannot run as given; the message is one line saying what to change."""


def parse_batch_size(value: int | str) -> int | str:
    """A batch size as given on a command line or in code: a positive integer, or "auto"."""
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) >= 1:
        return int(value)
    raise RequestError(f"--batch-size must be a positive integer or 'auto', got {value!r}")


def check_scoring_options(device: str, dtype: str, batch_size: int | str) -> int | str:
    """Check `device`, `dtype` and `batch_size` now, so that a typo fails before a model loads
    (this imports torch). Returns the batch size parsed (`parse_batch_size`)."""
    from curate.detectors import resolve_device, resolve_dtype

    size = parse_batch_size(batch_size)
    try:
        resolve_dtype(dtype, resolve_device(device))
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return size


def check_parquet_output(path: str | os.PathLike, option: str = "-o/--output") -> str:
    """`path` as a string, if a job can write a Parquet file there: a `.parquet` (or `.pq`)
    name, not a folder, in a folder that exists. `option` names the path in the error."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise RequestError(f"{option} {name} is a folder; name a Parquet file in it")
    if not name.lower().endswith(PARQUET_EXTENSIONS):
        raise RequestError(
            f"{option} {name}: curate writes Parquet files; name it with a .parquet extension"
        )
    folder = os.path.dirname(name) or "."
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise RequestError(f"{option} {name}: the folder {folder} {what}; create it first")
    return name
