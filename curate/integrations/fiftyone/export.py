"""Export FiftyOne samples, images embedded, to a Parquet file, and the checks on its path.

The writing is `curate.io.parquet.write_parquet` (atomic, HF image struct); this module picks
the samples (a `DecisionRule`'s outcomes), turns fields into columns and guards the path: the
FiftyOne App lets anyone who can open it choose where the server writes, so an export never
creates folders, only overwrites a Parquet file curate wrote, and stays inside
`$CURATE_EXPORT_ROOT` when an administrator sets it.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from curate import schema
from curate.filtering import KEEP, DecisionRule
from curate.integrations.fiftyone.decisions import check_rule_fields, selected_by
from curate.integrations.fiftyone.fields import (
    ERROR_FIELD,
    LABEL_FIELD,
    PROB_FIELD,
    PROVENANCE_FIELDS,
)
from curate.integrations.fiftyone.scoring import scoring_settings
from curate.integrations.fiftyone.wording import count

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection

EXPORT_ROOT_ENV = "CURATE_EXPORT_ROOT"


class ExportPathError(ValueError):
    """An export path that cannot or may not be written; the message is one line."""


def export_root(root: str | os.PathLike | None = None) -> str | None:
    """The folder exports are confined to: `root`, else `$CURATE_EXPORT_ROOT`, else None."""
    root = root or os.environ.get(EXPORT_ROOT_ENV) or None
    return os.path.abspath(os.path.expanduser(os.fspath(root))) if root else None


def _is_curate_parquet(path: str) -> bool:
    from curate.io.parquet import curate_metadata

    try:
        return bool(curate_metadata(path))
    except Exception:  # not Parquet, unreadable, ...: not a file curate wrote
        return False


def path_problem(
    path: str | os.PathLike | None, overwrite: bool = False, root: str | os.PathLike | None = None
) -> str | None:
    """Why a Parquet export may not be written at `path`, or None.

    The folder must exist (none is created); an existing file is replaced only with
    `overwrite` and only if it is a Parquet file with curate's metadata; with an export root
    (`root` or `$CURATE_EXPORT_ROOT`) the path, symlinks resolved, must lie inside it."""
    error = _path_error(path, overwrite, root)
    return str(error) if error is not None else None


def _path_error(
    path: str | os.PathLike | None, overwrite: bool, root: str | os.PathLike | None
) -> ExportPathError | FileExistsError | None:
    if path is None or not str(path).strip():
        return ExportPathError("an output path is required")
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    confine = export_root(root)
    if confine is not None:
        if not os.path.isdir(confine):
            return ExportPathError(
                f"the export folder {confine} ({EXPORT_ROOT_ENV}) does not exist"
            )
        real_root, real = os.path.realpath(confine), os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root or real == real_root:
            return ExportPathError(
                f"{path} is outside the export folder {confine}; write inside it"
            )
    if os.path.isdir(path):
        return ExportPathError(
            f"{path} is a directory; give a file path such as {os.path.join(path, 'kept.parquet')}"
        )
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        if os.path.lexists(parent):
            return ExportPathError(f"{parent} is not a folder")
        return ExportPathError(
            f"the folder {parent} does not exist; create it first (exports create no folders)"
        )
    try:  # a real file, as the export makes: permission bits do not tell (root, /proc)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        return ExportPathError(f"cannot write to the folder {parent}: {exc.strerror or exc}")
    if os.path.lexists(path):
        if not overwrite:
            return FileExistsError(f"{path} already exists (tick overwrite to replace it)")
        if not os.path.isfile(path) or not _is_curate_parquet(path):
            return ExportPathError(
                f"{path} is not a Parquet file written by curate, so it is never overwritten; "
                "choose another path"
            )
    return None


def export_parquet(
    samples: SampleCollection,
    path: str | os.PathLike,
    *,
    rule: DecisionRule | None = None,
    outcomes: Sequence[str] = (KEEP,),
    prob_field: str = PROB_FIELD,
    label_field: str = LABEL_FIELD,
    error_field: str = ERROR_FIELD,
    fields: Sequence[str] = (),
    overwrite: bool = False,
    root: str | os.PathLike | None = None,
    chunk_size: int = 256,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Write `samples` (only those whose outcome under `rule` is in `outcomes`, when a rule
    is given) to a Parquet file with the images embedded, via `curate.io.parquet.write_parquet`.

    Columns: `image` (HF `struct<bytes, path>`), `filepath`, `sample_id`, `tags`, `fake_prob`,
    `real_prob`, `deepfake_label`, `deepfake_error`, `decision` (with a rule), the provenance
    fields when the dataset has them, then `fields` (other sample fields; labels and documents
    as JSON). The scoring settings recorded on the dataset and the rule go in the schema
    metadata. Atomic. The path must pass `path_problem` (existing folder, `root` /
    `$CURATE_EXPORT_ROOT`, `overwrite` only of a curate Parquet file), else `ExportPathError`;
    an existing file without `overwrite` raises `FileExistsError`. A write that fails raises
    `ExportPathError` with the reason and leaves no file. `progress(rows_written_so_far)` is
    called per chunk. Returns rows written."""
    from datasets import Features, Image, Value
    from datasets import Sequence as HFSequence

    from curate.io.parquet import write_parquet

    schema_ = _check_export(samples, path, rule, prob_field, label_field, error_field, fields,
                            overwrite, root)  # fmt: skip
    view = samples
    # Where the rows came from; also what marks the file as curate's (so it may be replaced)
    # when the scores were not written by curate.
    metadata = {"curate.source": f"fiftyone:{samples._dataset.name}"}
    metadata.update(scoring_settings(samples, prob_field))
    if rule is not None:
        view = selected_by(samples, rule, list(outcomes), prob_field)
        metadata.update(rule.to_metadata())
        metadata["curate.outcomes"] = json.dumps(list(outcomes))
    evidence = [c for c in PROVENANCE_FIELDS if c in schema_ and c not in fields]
    # Typed up front, so a file with no rows (a rule that keeps nothing) has them too.
    typed = [*schema.SCORE_COLUMNS, *([schema.DECISION] if rule is not None else []), *evidence]
    features = Features(
        {
            schema.IMAGE: Image(),
            "filepath": Value("string"),
            "sample_id": Value("string"),
            "tags": HFSequence(Value("string")),
            **schema.datasets_features(typed),
        }
    )
    batches = _batches(view, rule, prob_field, label_field, error_field, fields, evidence,
                       chunk_size, progress)  # fmt: skip
    try:
        return write_parquet(
            batches, path, image_column=schema.IMAGE, metadata=metadata, overwrite=overwrite,
            features=features,
        )  # fmt: skip
    except FileExistsError:
        raise
    except OSError as exc:  # e.g. a folder that refuses files (/proc), a full disk
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ExportPathError(f"cannot write {os.fspath(path)}: {reason}") from None


def _check_export(
    samples: SampleCollection,
    path: str | os.PathLike,
    rule: DecisionRule | None,
    prob_field: str,
    label_field: str,
    error_field: str,
    fields: Sequence[str],
    overwrite: bool,
    root: str | os.PathLike | None,
) -> dict:
    """Raise what `export_parquet` raises before it writes anything; the field schema."""
    error = _path_error(path, overwrite, root)
    if error is not None:
        raise error
    schema_ = samples._dataset.get_field_schema()
    for name in (prob_field, label_field, error_field):
        if name not in schema_:
            raise ValueError(
                f"the dataset has no {name!r} field; score it first (detect_deepfakes)"
            )
    missing = [f for f in fields if f not in schema_]
    if missing:
        raise ValueError(f"no such sample field(s): {missing}")
    if rule is not None:
        check_rule_fields(samples, rule, prob_field)
    return schema_


@dataclass
class ExportProgress:
    """Where an export stands: rows written so far out of the rows it will write."""

    rows: int
    total: int
    done: bool = False  # the file is in place

    @property
    def fraction(self) -> float:
        return self.rows / self.total if self.total else 1.0

    @property
    def label(self) -> str:
        if self.done:
            return f"Exported {count(self.rows, 'row')}"
        return f"Wrote {self.rows:,} of {count(self.total, 'row')}"


def iter_export_parquet(
    samples: SampleCollection,
    path: str | os.PathLike,
    *,
    rule: DecisionRule | None = None,
    outcomes: Sequence[str] = (KEEP,),
    prob_field: str = PROB_FIELD,
    label_field: str = LABEL_FIELD,
    error_field: str = ERROR_FIELD,
    fields: Sequence[str] = (),
    overwrite: bool = False,
    root: str | os.PathLike | None = None,
    chunk_size: int = 256,
) -> Iterator[ExportProgress]:
    """`export_parquet` as an iterator of `ExportProgress` (a FiftyOne operator streams these
    to the App): one per chunk written, then a last one with `done=True` once the file is in
    place. The file is written on a worker thread while this yields.

    Not a generator function: the checks `export_parquet` makes before writing (path, fields,
    rule) raise in this call; a failure while writing raises from the iterator, after which
    no file is left."""
    _check_export(samples, path, rule, prob_field, label_field, error_field, fields, overwrite,
                  root)  # fmt: skip
    total = len(samples if rule is None else selected_by(samples, rule, list(outcomes), prob_field))
    kwargs = dict(rule=rule, outcomes=outcomes, prob_field=prob_field, label_field=label_field,
                  error_field=error_field, fields=fields, overwrite=overwrite, root=root,
                  chunk_size=chunk_size)  # fmt: skip
    return _stream_export(samples, path, total, kwargs)


def _stream_export(
    samples: SampleCollection, path: str | os.PathLike, total: int, kwargs: dict
) -> Iterator[ExportProgress]:
    written: queue.Queue[int] = queue.Queue()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="curate-fo-export") as pool:
        job = pool.submit(export_parquet, samples, path, progress=written.put, **kwargs)
        while not (job.done() and written.empty()):
            try:
                rows = written.get(timeout=0.2)
            except queue.Empty:
                continue
            yield ExportProgress(rows, total)
        rows = job.result()  # the writer's exception, if any, raises here
    yield ExportProgress(rows, total, done=True)


def _batches(
    view: SampleCollection,
    rule: DecisionRule | None,
    prob_field: str,
    label_field: str,
    error_field: str,
    fields: Sequence[str],
    evidence: list[str],
    chunk_size: int,
    progress: Callable[[int], Any] | None,
) -> Iterator[dict[str, list]]:
    names = ["id", "filepath", "tags", prob_field, label_field + ".label", error_field]
    columns = view.values(names + list(fields) + evidence)
    ids, paths, tags, probs, labels, errors = columns[:6]
    extra = dict(zip([*fields, *evidence], columns[6:], strict=True))
    nothing = [None] * len(ids)
    written = 0
    for s in range(0, len(ids), chunk_size):
        e = s + chunk_size
        p = probs[s:e]
        batch = {
            schema.IMAGE: paths[s:e],
            "filepath": paths[s:e],
            "sample_id": ids[s:e],
            "tags": [list(t or []) for t in tags[s:e]],
            schema.FAKE_PROB: p,
            # FiftyOne keeps fake_prob only; the scorer's real_prob is 1 - fake_prob in float32.
            schema.REAL_PROB: [
                None if v is None else float(np.float32(1) - np.float32(v)) for v in p
            ],
            schema.LABEL: labels[s:e],
            schema.ERROR: errors[s:e],
        }
        if rule is not None:
            batch[schema.DECISION] = list(
                rule.decide_many(
                    p,
                    extra.get(schema.PROVENANCE_SYNTHETIC, nothing)[s:e],
                    extra.get(schema.PROVENANCE_STRONG, nothing)[s:e],
                )
            )
        for name, vals in extra.items():
            batch[name] = [_plain(v) for v in vals[s:e]]
        yield batch
        written += len(batch["sample_id"])
        if progress is not None:
            progress(written)


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return json.dumps(value.to_dict(), default=str)
    return value
