"""Parquet as a source: globs, folders, any start row, limits, and column errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from source_rows import parquet_files, rows

from curate.sources import SourceError, resolve_source


def test_parquet_files_any_start(tmp_path):
    parquet_files(tmp_path)
    source = resolve_source(str(tmp_path / "part-*.parquet"))
    assert (source.kind, source.num_rows, source.image_column) == ("parquet", 12, "picture")
    for start in range(13):
        for batch_size in (1, 3, 5):
            assert [r["id"] for r in rows(source, batch_size, start)] == list(range(start, 12))
    limited = resolve_source(str(tmp_path / "part-*.parquet"), limit=6)
    assert [r["id"] for r in rows(limited, 4, start=2)] == [2, 3, 4, 5]
    assert resolve_source(tmp_path / "part-1.parquet").num_rows == 7
    # A folder of Parquet files (no images in it) is the same source as the glob.
    (tmp_path / "blob.png").unlink()
    assert [r["id"] for r in rows(resolve_source(tmp_path))] == list(range(12))


def test_parquet_column_errors(tmp_path):
    (path,) = parquet_files(tmp_path, rows_per_file=(3,))
    with pytest.raises(SourceError, match="has no column 'img' .*columns: id, picture"):
        resolve_source(path, image_column="img")
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), tmp_path / "plain.parquet")
    with pytest.raises(SourceError, match="cannot tell which column"):
        resolve_source(tmp_path / "plain.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(SourceError, match="cannot read .*bad.parquet as Parquet"):
        resolve_source(tmp_path / "bad.parquet")
    with pytest.raises(SourceError, match="no files match"):
        resolve_source(str(tmp_path / "nothing-*.parquet"))
