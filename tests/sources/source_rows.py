"""Helpers the source tests share: rows of a Source, and Parquet files to read."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def rows(source, batch_size: int = 3, start: int = 0) -> list[dict]:
    """Every row of `source` from `start`, read `batch_size` at a time (each batch checked)."""
    out = []
    for batch in source.batches(batch_size, start=start):
        n = len(next(iter(batch.values())))
        assert n <= batch_size
        out += [{k: v[i] for k, v in batch.items()} for i in range(n)]
    return out


def parquet_files(tmp_path: Path, rows_per_file=(5, 7), row_group_size: int = 2) -> list[Path]:
    """Parquet files `part-K.parquet` with columns id (0, 1, ... across files) and picture (a
    3x3 PNG, the HF image struct); the PNG is also `tmp_path / "blob.png"`."""
    if not (tmp_path / "blob.png").exists():
        Image.new("RGB", (3, 3)).save(tmp_path / "blob.png")
    blob = (tmp_path / "blob.png").read_bytes()
    paths, n = [], 0
    for k, count in enumerate(rows_per_file):
        t = pa.table(
            {
                "id": list(range(n, n + count)),
                "picture": [{"bytes": blob, "path": f"{i}.png"} for i in range(n, n + count)],
            }
        )
        path = tmp_path / f"part-{k}.parquet"
        pq.write_table(t, path, row_group_size=row_group_size)
        paths.append(path)
        n += count
    return paths
