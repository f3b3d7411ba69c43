"""What every Source offers: any row range as one batch, and its columns' Arrow types."""

from __future__ import annotations

import pyarrow as pa
from source_rows import parquet_files

from curate.schema import image_arrow_type
from curate.sources import resolve_source


def test_read_any_range_across_files(tmp_path):
    parquet_files(tmp_path, rows_per_file=(5, 7), row_group_size=2)
    source = resolve_source(str(tmp_path / "part-*.parquet"))
    for start, stop in [(0, 12), (3, 9), (4, 5), (5, 6), (11, 12), (6, 6)]:
        batch = source.read(start, stop)
        assert batch.get("id", []) == list(range(start, stop)), (start, stop)
        assert len(batch.get("picture", [])) == stop - start
    assert source.arrow_schema() == pa.schema([("id", pa.int64()), ("picture", image_arrow_type())])


def test_folder_schema_is_the_image_struct(image_folder):
    source = resolve_source(image_folder, image_column="img")
    assert source.arrow_schema() == pa.schema([("img", image_arrow_type())])
    assert [r["path"] for r in source.read(1, 3)["img"]] == sorted(
        p.name for p in image_folder.iterdir()
    )[1:3]
