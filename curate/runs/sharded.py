"""Scoring a source made of shards into a folder: one output shard per input shard, a
`_manifest.json` of the shards done, a lock per shard, resumable per shard."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.io.atomic import atomic_write_text, remove_temp_files
from curate.runs.single import (
    DEFAULT_CHUNK_ROWS,
    MANIFEST_FORMAT,
    ResumeMismatchError,
    RunInProgressError,
    ScoringRun,
    _manifest_differences,
    _WorkLock,
    work_dir_for,
)
from curate.schema import METADATA_PREFIX

if TYPE_CHECKING:
    from curate.scorer import DeepfakeScorer
    from curate.sources import Source

SHARDS_MANIFEST = "_manifest.json"


def shards_of(source: Source) -> list[Source]:
    """The shards of `source`, one `Source` each: the tar shards of a WebDataset source, the
    files of a Parquet source. Raises `ValueError` for a source that is not made of shards,
    or one cut by a row limit (a limit applies to one output file)."""
    from curate.sources.parquet import parquet_source

    shards = getattr(source, "shards", None)
    if source.kind == "webdataset":
        if not shards:
            raise ValueError("--limit applies to a single output file: pass -o OUT.parquet")
        return list(shards)
    if source.kind == "parquet":
        files = [f[0] for f in source.identity["files"]]
        shards = [parquet_source(f, source.image_column) for f in files]
        if source.num_rows != sum(s.num_rows for s in shards):
            raise ValueError("--limit applies to a single output file: pass -o OUT.parquet")
        return shards
    raise ValueError(
        f"{source.location} is a {source.kind} source, not shards: write it to one file "
        "(-o OUT.parquet)"
    )


def shard_output_names(shards: Sequence[Source]) -> list[str]:
    """Each shard's output file, relative to the output folder: its path relative to the
    shards' common folder, ending `.parquet` (`a/00012.tar` -> `a/00012.parquet`)."""
    from curate.io.webdataset import shard_stem

    paths = [os.path.abspath(s.location) for s in shards]
    base = os.path.commonpath([os.path.dirname(p) for p in paths])
    names = [shard_stem(os.path.relpath(p, base)).replace(os.sep, "/") + ".parquet" for p in paths]
    if len(set(names)) != len(names):
        raise ValueError("two shards would write the same output file; give them distinct names")
    return names


class _FolderLock:
    """A short exclusive lock on the output folder itself (a folder's inode never changes,
    unlike a manifest replaced by rename), held while a worker reads and rewrites the
    manifest."""

    def __init__(self, folder: str) -> None:
        self._fd = os.open(folder, os.O_RDONLY)
        with contextlib.suppress(ImportError):  # not POSIX: no lock
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __enter__(self) -> _FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


class ShardedScoringRun:
    """Score a source made of shards into a folder: one Parquet file per input shard.

    Each output shard has the schema and metadata a single-file run writes (`curate.source`
    is its input shard) and is written by a `ScoringRun`, atomically, its finished chunks kept
    in `SHARD.parquet.work/` until it is whole. `OUT/_manifest.json` holds the job (source,
    scoring settings, shards) and the shards done with their row counts. A run with the same
    arguments skips the shards done and resumes the one in progress; several processes given
    the same job share it: each shard is scored under its own lock, so no two write the same
    shard, and each returns once every shard is done. Different arguments raise
    `ResumeMismatchError`, a finished job `FileExistsError`; `overwrite` discards either and
    starts again (an unfinished job with the same arguments is resumed either way)."""

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
        self.scorer = scorer
        self.output = os.fspath(output)
        self.overwrite = overwrite
        self.chunk_rows = chunk_rows
        self.metadata = dict(metadata or {})
        self.row_group_size = row_group_size
        self.shards = shards_of(source)
        self.names = shard_output_names(self.shards)
        if os.path.exists(self.output) and not os.path.isdir(self.output):
            raise FileExistsError(f"{self.output} is a file; name a folder for the output shards")
        scoring = scorer.metadata()
        scoring.pop(METADATA_PREFIX + "version", None)
        self.manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            # The shards' files decide the job, not how SOURCE named them (a pattern, a folder).
            "source": {"kind": source.kind, "fingerprint": source.fingerprint},
            "location": str(source.location),
            "image_column": source.image_column,
            "rows": None,
            "chunk_rows": chunk_rows,
            "scoring": {k.removeprefix(METADATA_PREFIX): v for k, v in scoring.items()},
            "metadata": self.metadata,
            "shards": [[n, str(s.location)] for n, s in zip(self.names, self.shards, strict=True)],
        }
        self.done: dict[str, int] = self._inspect()[0]

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.output, SHARDS_MANIFEST)

    @property
    def resumed_rows(self) -> int:
        """Rows in the shards an earlier run finished."""
        return sum(self.done.values())

    def _read_manifest(self) -> dict[str, Any] | None:
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError):
            return None

    def _write_manifest(self, manifest: Mapping[str, Any]) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    def _inspect(self) -> tuple[dict[str, int], bool]:
        """(shards done, True) when the folder holds this job unfinished; ({}, False) when it
        holds nothing to resume (nothing, or a job to discard). Read-only."""
        old = self._read_manifest() if os.path.isdir(self.output) else None
        if old is None:
            foreign = os.path.isdir(self.output) and any(
                not n.startswith(".") for n in os.listdir(self.output)
            )
            if foreign and not self.overwrite:
                raise FileExistsError(
                    f"{self.output} is not empty and holds no curate run; name a new or empty "
                    "folder (or pass --overwrite to write the shards into it)"
                )
            return {}, False
        differ = _manifest_differences(old, self.manifest)
        names = [n for n, _ in self.manifest["shards"]]
        if [n for n, _ in old.get("shards", [])] != names and not differ:
            differ = ["shards"]
        if not differ and not old.get("complete"):
            return {str(k): int(v) for k, v in old.get("done", {}).items()}, True
        if self.overwrite:
            return {}, False
        if differ:
            raise ResumeMismatchError(
                f"{self.output} holds a run with different {', '.join(differ)}; re-run with the "
                "same arguments to resume it, or pass --overwrite to discard it and start again"
            )
        raise FileExistsError(
            f"{self.output} holds this job finished already (pass --overwrite to score it again)"
        )

    def run(self, progress: Any = None, shard_done: Any = None) -> int:
        """Score every shard not done yet. `progress(rows)` is called after each batch,
        `shard_done(name, rows, done, total)` after each shard this process finishes.
        Returns the number of rows in all the output shards."""
        self.start()
        waiting = []
        for shard, name in zip(self.shards, self.names, strict=True):
            if name in self.done:
                continue
            try:
                lock = _WorkLock(self._lock_path(name), self._path(name))
            except RunInProgressError:  # another worker has it: come back to it at the end
                waiting.append((shard, name))
                continue
            self._score_shard(shard, name, lock, progress, shard_done)
        for shard, name in waiting:
            lock = _WorkLock(self._lock_path(name), self._path(name), wait=True)
            self._score_shard(shard, name, lock, progress, shard_done)
        with _FolderLock(self.output):
            manifest = self._read_manifest()
            missing = [n for n in self.names if n not in manifest["done"]]
            if missing:  # each shard was scored here or waited for: this cannot happen
                raise RuntimeError(f"shards not done at the end of the run: {missing[:3]}")
            self._write_manifest({**manifest, "complete": True})
            remove_temp_files(self.manifest_path)
        self.done = {str(k): int(v) for k, v in manifest["done"].items()}
        return sum(self.done.values())

    # -- for an engine that scores many shards at once (Ray): start, claim, record, run() ---

    def start(self) -> None:
        """Start the job, or join it: of several workers, the first writes the manifest."""
        os.makedirs(self.output, exist_ok=True)
        with _FolderLock(self.output):
            self.done, resume = self._inspect()
            if not resume:
                self._discard(self._read_manifest())
                self._write_manifest({**self.manifest, "done": {}})

    def claim(self) -> list[tuple[Source, str, Any]]:
        """`(shard, output path, lock)` of every shard not done that no other worker holds,
        each locked for the caller, who writes the output (atomically), `record`s it and
        releases the lock; `run()` then finishes the job (waiting for other workers' shards,
        scoring any a dead worker left)."""
        claimed = []
        for shard, name in zip(self.shards, self.names, strict=True):
            if name in self.done:
                continue
            try:
                lock = _WorkLock(self._lock_path(name), self._path(name))
            except RunInProgressError:
                continue
            rows = self._finished_rows(name)
            if rows is None:
                remove_temp_files(self._path(name))
                claimed.append((shard, self._path(name), lock))
            else:
                self.record(self._path(name), rows)
                lock.release()
        return claimed

    def record(self, path: str, rows: int) -> None:
        """Note in the manifest that the output shard at `path` is complete with `rows`."""
        name = os.path.relpath(path, self.output).replace(os.sep, "/")
        with _FolderLock(self.output):
            manifest = self._read_manifest()
            manifest["done"][name] = rows
            self._write_manifest(manifest)
            self.done = {str(k): int(v) for k, v in manifest["done"].items()}

    def output_schema(self, shard: Source, first: Mapping[str, Sequence]) -> pa.Schema:
        """The schema and metadata a local run gives the output of `shard`."""
        return ScoringRun(
            shard, self.scorer, os.devnull + ".parquet", metadata=self.metadata
        )._schema(first)

    def _discard(self, old: Mapping[str, Any] | None) -> None:
        """Remove an earlier job's output shards (and, with `overwrite`, this job's names)."""
        names = [n for n, _ in (old or {}).get("shards", [])]
        for name in names + (self.names if self.overwrite else []):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(name))
            shutil.rmtree(work_dir_for(self._path(name)), ignore_errors=True)

    def _path(self, name: str) -> str:
        return os.path.join(self.output, *name.split("/"))

    def _lock_path(self, name: str) -> str:
        return work_dir_for(self._path(name)) + ".lock"

    def _score_shard(
        self, shard: Source, name: str, lock: _WorkLock, progress: Any, shard_done: Any
    ) -> None:
        path = self._path(name)
        try:
            rows = self._finished_rows(name)
            if rows is None:
                remove_temp_files(path)
                run = ScoringRun(
                    shard,
                    self.scorer,
                    path,
                    chunk_rows=self.chunk_rows,
                    metadata=self.metadata,
                    row_group_size=self.row_group_size,
                )
                rows = run.run_locked(progress)
            self.record(path, rows)
        finally:
            lock.release()
        if shard_done is not None:
            shard_done(name, rows, len(self.done), len(self.names))

    def _finished_rows(self, name: str) -> int | None:
        """Rows of shard `name` if a worker finished it (the manifest says so, or its output
        is there: it appears only when complete, and a worker can die between writing it and
        recording it); None if it is still to be scored."""
        done = (self._read_manifest() or {}).get("done", {})
        if name in done:
            return int(done[name])
        if os.path.exists(self._path(name)):
            # A worker killed between publishing the shard and cleaning up leaves its working
            # folder behind: the shard is whole, so the folder goes now.
            shutil.rmtree(work_dir_for(self._path(name)), ignore_errors=True)
            return pq.ParquetFile(self._path(name)).metadata.num_rows
        return None
