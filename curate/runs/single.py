"""Resumable scoring of a source into one Parquet file: working folder, manifest, lock, chunks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate import schema
from curate.io.atomic import atomic_write_text
from curate.io.parquet import (
    DEFAULT_ROW_GROUP_SIZE,
    AtomicParquetWriter,
    build_schema,
    to_table,
)
from curate.schema import METADATA_PREFIX
from curate.sources.webdataset import REASON

if TYPE_CHECKING:
    from curate.scorer import DeepfakeScorer
    from curate.sources import Source
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
DEFAULT_CHUNK_ROWS = 256


def with_scores(batch: Mapping[str, Sequence], scores: Mapping[str, list]) -> dict[str, list]:
    """The source's columns with the scorer's added. A reason the source itself gave a row
    (`REASON`: a WebDataset sample with no image member, one cut short by a truncated shard)
    becomes its `deepfake_error`, and the row has no score."""
    rows = {k: v for k, v in batch.items() if k != REASON}
    rows.update(scores)
    reasons = batch.get(REASON)
    if reasons is None or all(r is None for r in reasons):
        return rows
    unscored = [c for c in (*schema.SCORE_COLUMNS, *schema.LOGIT_COLUMNS) if c in scores]
    for i, reason in enumerate(reasons):
        if reason is not None:
            for c in unscored:
                scores[c][i] = None
            scores[schema.ERROR][i] = reason
    return rows


def output_schema(
    source: Source,
    scorer: DeepfakeScorer,
    first: Mapping[str, Sequence],
    metadata: Mapping[str, str],
) -> pa.Schema:
    """The schema of a run's output: the source's columns (its features when known, else
    `first`'s types), then the scorer's in their order and contract types, with `metadata`.
    The source's reasons (`REASON`) are not a column."""
    from datasets import Features

    features = None
    if source.features is not None:
        own = {k: v for k, v in source.features.items() if k not in scorer.features and k != REASON}
        features = Features({**own, **scorer.features})
    return build_schema(
        first, image_column=source.image_column, features=features, metadata=metadata
    )


class ResumeMismatchError(ValueError):
    """The working folder holds an unfinished run made with different arguments."""


class RunInProgressError(ValueError):
    """Another process is scoring into the same output right now."""


class _WorkLock:
    """An exclusive lock on a scoring run's working folder, so two runs never share chunks.

    The kernel drops it when the process dies (even on `kill -9`); the file is removed on
    release. `wait` blocks until the holder lets go instead of raising `RunInProgressError`."""

    def __init__(self, path: str, output: str, *, wait: bool = False) -> None:
        self.path = path
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            return
        while self._fd is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                raise RunInProgressError(
                    f"another `curate score` is writing {output} right now (lock: {path})"
                ) from None
            # The holder before us removed the file as it let go: a lock on a file that is no
            # longer at `path` guards nothing, so take the one that is there now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
            else:
                os.close(fd)

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
        source: Source,
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
        self.metadata = scorer.metadata()
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
        atomic_write_text(os.path.join(self.work, MANIFEST), manifest)

    def _schema(self, first: Mapping[str, Sequence]) -> pa.Schema:
        return output_schema(self.source, self.scorer, first, self.metadata)

    def run(self, progress: Any = None) -> int:
        """Score what is left, then assemble the output. `progress(rows)` is called after each
        batch. Returns the number of rows in the output."""

        lock = _WorkLock(self.lock_path, self.output)
        try:
            return self.run_locked(progress)
        finally:
            lock.release()

    @property
    def lock_path(self) -> str:
        """The file whose lock says a process is scoring into `output` right now."""
        return self.work + ".lock"

    def run_locked(self, progress: Any = None) -> int:
        """`run()` for a caller that holds the lock on `lock_path` already."""
        if not self.overwrite and os.path.exists(self.output):  # finished while we waited
            raise FileExistsError(f"{self.output} already exists (pass --overwrite to replace it)")
        self.done_chunks = self._inspect_work_dir()  # again, now that no one else can write
        self._prepare_work_dir()
        column = self.source.image_column
        start = self.done_chunks * self.chunk_rows
        chunk = self.done_chunks
        writer: AtomicParquetWriter | None = None
        out_schema = self._existing_schema()
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
                    rows = with_scores(batch, scores)
                    n = len(scores[next(iter(scores))])
                    offset = 0
                    while offset < n:
                        if writer is None:
                            out_schema = out_schema or self._schema(rows)
                            writer = AtomicParquetWriter(
                                _chunk_path(self.work, chunk),
                                out_schema,
                                overwrite=True,
                                row_group_size=self.row_group_size,
                            )
                        take = min(n - offset, self.chunk_rows - writer.rows)
                        part = {k: list(v)[offset : offset + take] for k, v in rows.items()}
                        writer.write(to_table(part, out_schema, column))
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
        return self._assemble(chunk, out_schema)

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
        if schema is None:  # an empty source: an empty file with the known columns
            empty = {self.source.image_column: [], **{c: [] for c in self.scorer.columns}}
            schema = self._schema(empty)
        writer = AtomicParquetWriter(
            self.output, schema, overwrite=True, row_group_size=self.row_group_size
        )
        try:
            for i in range(chunks):
                for rb in pq.ParquetFile(_chunk_path(self.work, i)).iter_batches(
                    batch_size=DEFAULT_ROW_GROUP_SIZE
                ):
                    writer.write(rb)
            expected = self.source.num_rows
            # Checked before the file is published: a short output never appears.
            if expected is not None and writer.rows != expected:
                raise RuntimeError(
                    f"assembled {writer.rows} rows but the source has {expected}; the working "
                    f"folder {self.work} is kept for inspection and {self.output} was not written"
                )
            writer.close()
        except BaseException:
            writer.abort()
            raise
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
