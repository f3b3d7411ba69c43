"""Parquet export that loses nothing: images embedded as bytes, atomic writes, streaming.

The image column is written in the Hugging Face layout `struct<bytes: binary, path: string>`
with the encoded file bytes embedded (never just a path), and the file carries the
`datasets` features in its schema metadata, so `datasets.load_dataset("parquet", ...)` gives
an `Image` feature back and pyarrow / DuckDB see plain bytes. Scoring settings (model,
revision, dtype, threshold, curate version) go in the schema metadata under `curate.*` keys.
A file appears only when complete: it is written beside its destination and renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from datasets import Features

    from curate.scorer import DeepfakeScorer

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCORE_TYPES = {
    "fake_prob": pa.float32(),
    "real_prob": pa.float32(),
    "deepfake_label": pa.string(),
    "deepfake_error": pa.string(),
    "fake_logit": pa.float32(),
    "real_logit": pa.float32(),
    "decision": pa.string(),
}
# Hugging Face writes image datasets with 100-row row groups: small enough that a reader
# holds few images at a time, large enough that the footer and per-group overhead stay small.
DEFAULT_ROW_GROUP_SIZE = 100
# A row group is also cut once its buffered bytes pass this, whatever the row count.
MAX_ROW_GROUP_BYTES = 128 * 1024 * 1024
METADATA_PREFIX = "curate."


class ParquetExportError(ValueError):
    """Data that cannot be written as asked; the message is one line a user can act on."""


def image_struct(value: Any) -> dict[str, Any] | None:
    """Any image form `curate.images` accepts, as `{"bytes", "path"}` with the bytes embedded.

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
    if enc.get("bytes") is None and enc.get("path"):
        try:
            with open(enc["path"], "rb") as f:
                enc = {"bytes": f.read(), "path": enc["path"]}
        except OSError:
            pass
    return {"bytes": enc.get("bytes"), "path": enc.get("path")}


def scoring_metadata(scorer: DeepfakeScorer, **extra: Any) -> dict[str, str]:
    """The settings that produced a file's scores, as `curate.*` schema-metadata entries.

    `extra` (for example `threshold=0.5`) is added as `curate.<key>`; values that are not
    strings are stored as JSON."""
    from curate import __version__
    from curate.model import resolve_device, resolve_dtype

    detector = getattr(scorer, "_detector", None)
    if detector is not None:
        dtype = str(detector.dtype).removeprefix("torch.")
        device = detector.device.type
    else:
        try:
            dev = resolve_device(scorer.device)
            dtype = str(resolve_dtype(scorer.dtype, dev)).removeprefix("torch.")
            device = dev.type
        except ValueError:
            dtype, device = str(scorer.dtype), str(scorer.device)
    calibration = scorer.calibration.to_dict() if scorer.calibration is not None else None
    meta: dict[str, Any] = {
        "model": scorer.model,
        "revision": scorer.revision,
        "dtype": dtype,
        "draft": scorer.draft,
        "calibration": calibration,
        "version": __version__,
    }
    # Settings that change pixels or numerics, where this scorer has them.
    for name in ("resize", "decode", "max_pixels"):
        if hasattr(scorer, name):
            meta[name] = getattr(scorer, name)
    meta["device_type"] = device
    if getattr(scorer, "provenance", None) is not None:
        from curate.provenance import describe

        meta["provenance"] = describe(scorer.provenance)
    meta.update(extra)
    return {METADATA_PREFIX + k: _meta_value(v) for k, v in meta.items()}


def _meta_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtomicParquetWriter:
    """Stream record batches into `path` through a temporary file beside it.

    Rows are buffered into row groups of `row_group_size` rows (or `MAX_ROW_GROUP_BYTES`);
    `close()` flushes, fsyncs and renames; `abort()` (or an exception inside `with`) removes
    the temporary file and leaves `path` as it was."""

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema,
        *,
        overwrite: bool = False,
        row_group_size: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{self.path} is a directory, not a Parquet file path")
        if not overwrite and os.path.exists(self.path):
            raise FileExistsError(f"{self.path} already exists (pass overwrite=True / --overwrite)")
        self.schema = schema
        self.row_group_size = int(row_group_size or DEFAULT_ROW_GROUP_SIZE)
        if self.row_group_size < 1:
            raise ValueError(f"row_group_size must be at least 1, got {row_group_size}")
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory
        )
        os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        self._file = os.fdopen(fd, "wb")
        self._writer = pq.ParquetWriter(self._file, schema, compression="zstd")
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self.rows = 0
        self._done = False

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

    def close(self) -> int:
        """Finish the file and move it into place; returns the number of rows written."""
        if self._done:
            return self.rows
        try:
            self._flush(final=True)
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.rows

    def abort(self) -> None:
        """Drop everything written so far; the destination is left untouched."""
        if self._done:
            return
        self._done = True
        for closer in (self._writer.close, self._file.close):
            with contextlib.suppress(Exception):
                closer()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


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
            if name in fields or name == image_column or name in SCORE_TYPES:
                fields.setdefault(name, pa.null())
                continue
            try:
                fields[name] = pa.array(list(values)).type
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ParquetExportError(f"cannot store column {name!r}: {exc}") from None
    if image_column is not None:
        fields[image_column] = IMAGE_TYPE
    for name, typ in SCORE_TYPES.items():
        if name in fields:
            fields[name] = typ
    schema = pa.schema(list(fields.items()))
    meta = {b"huggingface": _hf_metadata(schema, image_column, features)}
    meta.update({k.encode(): _meta_value(v).encode() for k, v in (metadata or {}).items()})
    return schema.with_metadata(meta)


def _to_table(
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

    Values in `image_column` may be any form `curate.images` accepts; they are stored as the
    HF `struct<bytes, path>` with the file bytes embedded. `features` (a `datasets.Features`)
    fixes column types up front and carries through to `load_dataset` (class labels, ...);
    otherwise types come from the first batch. Streams batch by batch; atomic (temp file
    beside `path`, then rename); refuses an existing `path` unless `overwrite` with
    `FileExistsError`. Returns the number of rows written."""
    it: Iterator[Mapping[str, Sequence]] = iter(batches)
    first = next(it, None)
    if first is None:
        from curate.scorer import SCORE_COLUMNS

        empty = {c: [] for c in ((image_column,) if image_column else ()) + SCORE_COLUMNS}
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
        writer.write(_to_table(first, schema, image_column))
        for batch in it:
            writer.write(_to_table(batch, schema, image_column))
    return writer.rows


def iter_parquet_batches(
    paths: Sequence[str | os.PathLike],
    *,
    batch_size: int = 64,
    columns: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of one or more Parquet files, in order, a few rows in memory at a time."""
    for p in paths:
        pf = pq.ParquetFile(p)
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)


# -- resumable scoring of a source into one Parquet file ---------------------------------------

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
DEFAULT_CHUNK_ROWS = 256


class ResumeMismatchError(ValueError):
    """The working folder holds an unfinished run made with different arguments."""


class RunInProgressError(ValueError):
    """Another process is scoring into the same output right now."""


class _WorkLock:
    """An exclusive lock on a scoring run's working folder, so two runs never share chunks.

    The kernel drops it when the process dies (even on `kill -9`); the file is removed on
    release."""

    def __init__(self, path: str, output: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise RunInProgressError(
                f"another `curate score` is writing {output} right now (lock: {path})"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = None


def work_dir_for(output: str | os.PathLike) -> str:
    """Where a scoring run into `output` keeps its finished chunks until the file is whole."""
    return os.fspath(output) + ".work"


_CHUNK_NAME = re.compile(r"chunk-(\d+)\.parquet")


def _chunk_path(work: str, index: int) -> str:
    return os.path.join(work, f"chunk-{index:08d}.parquet")


class ScoringRun:
    """Score a `curate.sources.Source` into one Parquet file, resumably.

    Finished rows are kept in a working folder beside the output (`OUT.work/`): chunk files of
    `chunk_rows` rows, each written atomically, and a manifest of the arguments that decide the
    result (source identity, model, revision, dtype, image column, limit, ...). Constructing a
    run with the same arguments resumes after the last finished chunk; different arguments
    raise `ResumeMismatchError` (or, with `overwrite`, discard the old chunks). `run()`
    writes the output (every input row exactly once, in input order) and removes the
    working folder.
    """

    def __init__(
        self,
        source: Any,
        scorer: DeepfakeScorer,
        output: str | os.PathLike,
        *,
        overwrite: bool = False,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        metadata: Mapping[str, str] | None = None,
        row_group_size: int | None = None,
    ) -> None:
        self.source = source
        self.scorer = scorer
        self.output = os.fspath(output)
        self.overwrite = overwrite
        self.row_group_size = row_group_size
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        if os.path.isdir(self.output):
            raise IsADirectoryError(f"{self.output} is a directory, not a Parquet file path")
        if not overwrite and os.path.exists(self.output):
            raise FileExistsError(f"{self.output} already exists (pass --overwrite to replace it)")
        self.work = work_dir_for(self.output)
        self.metadata = dict(scoring_metadata(scorer))
        self.metadata[METADATA_PREFIX + "source"] = str(source.location)
        self.metadata.update(metadata or {})
        self.manifest = {
            "format": MANIFEST_FORMAT,
            "source": {
                "kind": source.kind,
                "location": str(source.location),
                "fingerprint": source.fingerprint,
            },
            "image_column": source.image_column,
            "rows": source.num_rows,
            "scoring": {
                k.removeprefix(METADATA_PREFIX): v
                for k, v in self.metadata.items()
                if k != METADATA_PREFIX + "version"
            },
            "chunk_rows": int(chunk_rows),
        }
        self.chunk_rows = int(chunk_rows)
        self.done_chunks = self._inspect_work_dir()
        self.resumed_rows = self.done_chunks * self.chunk_rows
        if source.num_rows is not None:
            self.resumed_rows = min(self.resumed_rows, source.num_rows)

    def _inspect_work_dir(self) -> int:
        """How many finished chunks of an earlier run with the same arguments can be reused.

        Read-only: nothing is created or deleted until `run()`, so a run that fails before it
        starts (a model that cannot load) leaves no working folder behind."""
        path = os.path.join(self.work, MANIFEST)
        if not os.path.isdir(self.work):
            return 0
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, json.JSONDecodeError):
            old = {}
        differ = _manifest_differences(old, self.manifest)
        if differ:
            has_chunks = any(_CHUNK_NAME.fullmatch(n) for n in os.listdir(self.work))
            if has_chunks and not self.overwrite:
                raise ResumeMismatchError(
                    f"{self.work} holds an unfinished run with different {', '.join(differ)}; "
                    "re-run with the same arguments to resume it, or pass --overwrite to "
                    "discard it and start again"
                )
            return 0
        self.chunk_rows = int(old["chunk_rows"])
        self.manifest["chunk_rows"] = self.chunk_rows
        count = 0
        while os.path.exists(_chunk_path(self.work, count)):
            try:
                rows = pq.ParquetFile(_chunk_path(self.work, count)).metadata.num_rows
            except (OSError, pa.ArrowException):
                break
            count += 1
            if rows != self.chunk_rows:  # only the last chunk is short, and it ends the run
                break
        return count

    def _prepare_work_dir(self) -> None:
        """Keep the reusable chunks and drop the rest (temp files of a killed write, chunks
        past a damaged one), or start a fresh working folder with this run's manifest."""
        import shutil

        if self.done_chunks:
            for name in os.listdir(self.work):
                m = _CHUNK_NAME.fullmatch(name)
                if name.endswith(".tmp") or (m and int(m.group(1)) >= self.done_chunks):
                    os.unlink(os.path.join(self.work, name))
            return
        if os.path.isdir(self.work):
            shutil.rmtree(self.work)
        os.makedirs(self.work)
        manifest = json.dumps(self.manifest, indent=2, sort_keys=True)
        _atomic_write_text(os.path.join(self.work, MANIFEST), manifest)

    def _schema(self, first: Mapping[str, Sequence]) -> pa.Schema:
        from datasets import Features

        features = None
        if self.source.features is not None:
            features = Features({**self.source.features, **self.scorer.features})
        return build_schema(
            first,
            image_column=self.source.image_column,
            features=features,
            metadata=self.metadata,
        )

    def run(self, progress: Any = None) -> int:
        """Score what is left, then assemble the output. `progress(rows)` is called after each
        batch. Returns the number of rows in the output."""

        lock = _WorkLock(self.work + ".lock", self.output)
        try:
            self.done_chunks = self._inspect_work_dir()  # again, now that no one else can write
            return self._run(progress)
        finally:
            lock.release()

    def _run(self, progress: Any) -> int:
        from concurrent.futures import ThreadPoolExecutor

        self._prepare_work_dir()
        column = self.source.image_column
        start = self.done_chunks * self.chunk_rows
        chunk = self.done_chunks
        writer: AtomicParquetWriter | None = None
        schema = self._existing_schema()
        batches = self.source.batches(self.images_per_call(), start=start)
        try:
            # Read the next batch (file bytes) while the model scores this one.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="curate-read") as reader:
                pending = reader.submit(next, batches, None)
                while True:
                    batch = pending.result()
                    if batch is None:
                        break
                    pending = reader.submit(next, batches, None)
                    scores = self.scorer.score_images(batch[column])
                    rows = {**batch, **scores}
                    n = len(scores[next(iter(scores))])
                    offset = 0
                    while offset < n:
                        if writer is None:
                            schema = schema or self._schema(rows)
                            writer = AtomicParquetWriter(
                                _chunk_path(self.work, chunk),
                                schema,
                                overwrite=True,
                                row_group_size=self.row_group_size,
                            )
                        take = min(n - offset, self.chunk_rows - writer.rows)
                        part = {k: list(v)[offset : offset + take] for k, v in rows.items()}
                        writer.write(_to_table(part, schema, column))
                        offset += take
                        if writer.rows == self.chunk_rows:
                            writer.close()
                            writer, chunk = None, chunk + 1
                    if progress is not None:
                        progress(n)
            if writer is not None:
                writer.close()
                writer, chunk = None, chunk + 1
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return self._assemble(chunk, schema)

    def images_per_call(self) -> int:
        """Rows handed to `score_images` at once (and between two progress updates).

        The scorer decodes its next forward batch while the model runs the current one, but
        only within one call: on a GPU, where decoding is the bottleneck, several forward
        batches go in each call; on a CPU the model dominates and one batch a call keeps the
        progress bar lively."""
        detector = self.scorer.detector
        size = self.scorer.chunk_size(detector)
        return size * 8 if detector.device.type == "cuda" else size

    def _existing_schema(self) -> pa.Schema | None:
        if self.done_chunks:
            return pq.read_schema(_chunk_path(self.work, 0))
        return None

    def _assemble(self, chunks: int, schema: pa.Schema | None) -> int:
        import shutil

        if schema is None:  # an empty source: an empty file with the known columns
            empty = {self.source.image_column: [], **{c: [] for c in self.scorer.columns}}
            schema = self._schema(empty)
        with AtomicParquetWriter(
            self.output, schema, overwrite=True, row_group_size=self.row_group_size
        ) as writer:
            for i in range(chunks):
                for rb in pq.ParquetFile(_chunk_path(self.work, i)).iter_batches(
                    batch_size=DEFAULT_ROW_GROUP_SIZE
                ):
                    writer.write(rb)
        expected = self.source.num_rows
        if expected is not None and writer.rows != expected:
            raise RuntimeError(
                f"wrote {writer.rows} rows but the source has {expected}; the working folder "
                f"{self.work} is kept for inspection"
            )
        shutil.rmtree(self.work, ignore_errors=True)
        return writer.rows


def _manifest_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    if old.get("format") != new["format"] or "chunk_rows" not in old:
        return ["working-folder format"]
    differ = []
    if old.get("source") != new["source"]:
        differ.append("source (or its files changed)")
    if old.get("image_column") != new["image_column"]:
        differ.append("image column")
    if old.get("rows") != new["rows"]:
        differ.append("row count (--limit)")
    old_s, new_s = old.get("scoring", {}), new["scoring"]
    for key in sorted(set(old_s) | set(new_s)):
        if old_s.get(key) != new_s.get(key):
            differ.append(f"{key} ({old_s.get(key)} -> {new_s.get(key)})")
    return differ


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
