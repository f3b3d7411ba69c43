"""Resumable scoring jobs: a source into one Parquet file (`ScoringRun`: working folder,
manifest, lock, chunks) or a source made of shards into a folder of output shards, one per
input shard (`ShardedScoringRun`: `_manifest.json`, a lock per shard)."""

from curate.runs.sharded import (
    SHARDS_MANIFEST,
    ShardedScoringRun,
    shard_output_names,
    shards_of,
)
from curate.runs.single import (
    DEFAULT_CHUNK_ROWS,
    MANIFEST,
    ResumeMismatchError,
    RunInProgressError,
    ScoringRun,
    _WorkLock,
    output_schema,
    with_scores,
    work_dir_for,
)

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "MANIFEST",
    "SHARDS_MANIFEST",
    "ResumeMismatchError",
    "RunInProgressError",
    "ScoringRun",
    "ShardedScoringRun",
    "_WorkLock",
    "output_schema",
    "shard_output_names",
    "shards_of",
    "with_scores",
    "work_dir_for",
]
