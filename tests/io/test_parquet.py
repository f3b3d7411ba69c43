"""Parquet export: embedded image bytes read back by datasets, pyarrow and DuckDB; metadata;
row groups; atomic writes. (Resumable scoring runs: tests/test_runs.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate import DeepfakeScorer
from curate.io.parquet import IMAGE_TYPE, ParquetExportError, write_parquet
from curate.io.parquet import curate_metadata as read_metadata


def _png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_images_read_back_byte_identical_by_three_readers(tmp_path, photo_paths):
    import duckdb
    from datasets import Image as ImageFeature
    from datasets import load_dataset

    jpg = next(p for p in photo_paths if p.endswith(".jpg"))
    png = next(p for p in photo_paths if p.endswith(".png"))
    generated = Image.new("RGBA", (40, 30), (10, 200, 30, 128))
    array = np.arange(24 * 32 * 3, dtype=np.uint8).reshape(24, 32, 3)
    values = [
        jpg,  # a path: the file's bytes are embedded
        Path(png),
        Image.open(jpg),  # a PIL image opened from a file keeps that file's bytes
        {"bytes": Path(png).read_bytes(), "path": "somewhere/else.png"},
        {"bytes": None, "path": jpg},
        Path(jpg).read_bytes(),
        generated,  # encoded losslessly (PNG)
        array,
        None,
    ]
    out = tmp_path / "images.parquet"
    assert write_parquet([{"image": values, "n": list(range(len(values)))}], out) == len(values)

    file_bytes = [Path(jpg).read_bytes(), Path(png).read_bytes()]
    expected_bytes = [file_bytes[0], file_bytes[1], file_bytes[0], file_bytes[1], file_bytes[0]]
    expected_bytes.append(file_bytes[0])

    table = pq.read_table(out)
    assert table.schema.field("image").type == IMAGE_TYPE
    rows = table.column("image").to_pylist()
    assert [r["bytes"] for r in rows[:6]] == expected_bytes
    assert rows[3]["path"] == "somewhere/else.png" and rows[8] is None
    assert not any(r["bytes"] is None for r in rows[:8])

    duck = duckdb.sql(
        f"SELECT n, image.bytes AS b FROM read_parquet('{out}') ORDER BY n"
    ).fetchall()
    assert [bytes(b) for _, b in duck[:6]] == expected_bytes
    assert duck[8][1] is None

    ds = load_dataset("parquet", data_files=str(out), split="train")
    assert isinstance(ds.features["image"], ImageFeature)
    decoded = ds["image"]
    assert np.array_equal(np.asarray(decoded[0]), np.asarray(Image.open(jpg)))
    assert np.array_equal(np.asarray(decoded[1]), np.asarray(Image.open(png)))
    assert np.array_equal(np.asarray(decoded[6]), np.asarray(generated))
    assert np.array_equal(np.asarray(decoded[7]), array)
    assert decoded[8] is None


def test_scoring_metadata_in_the_schema(tmp_path, tiny_checkpoint, photo_paths):
    import curate

    # dtype pinned: "auto" is bf16 on CPUs with native bf16, and this checks the entries.
    scorer = DeepfakeScorer(model=tiny_checkpoint, device="cpu", dtype="float32")
    meta = scorer.metadata(threshold=0.5, note="x")
    assert meta == {
        "curate.model": tiny_checkpoint,
        "curate.revision": "null",
        "curate.dtype": "float32",
        "curate.draft": "false",
        "curate.calibration": "null",
        "curate.version": curate.__version__,
        "curate.resize": "auto",
        "curate.decode": "cpu",
        "curate.max_pixels": str(scorer.max_pixels),
        "curate.max_file_bytes": str(scorer.max_file_bytes),
        "curate.device_type": "cpu",
        "curate.threshold": "0.5",
        "curate.note": "x",
    }
    scores = scorer.score_images(photo_paths)
    out = tmp_path / "scored.parquet"
    write_parquet([{"image": photo_paths, **scores}], out, metadata=meta)
    assert read_metadata(out) == meta
    schema = pq.read_schema(out)
    assert str(schema.field("fake_prob").type) == "float"
    assert str(schema.field("deepfake_error").type) == "string"
    assert b"huggingface" in schema.metadata


def test_writer_creates_no_folders_and_keeps_long_names(tmp_path):
    table = {"image": [None], "i": [1]}
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        write_parquet([table], tmp_path / "missing" / "out.parquet")
    assert not (tmp_path / "missing").exists()
    long_name = tmp_path / ("x" * 240 + ".parquet")  # legal; name + temp suffix would not be
    assert write_parquet([table], long_name) == 1
    assert [p.name for p in tmp_path.iterdir()] == [long_name.name]


def test_row_groups_are_sized_for_images(tmp_path):
    blob = _png_bytes(Image.new("RGB", (4, 4)))
    batches = [{"image": [blob] * 7, "i": list(range(k, k + 7))} for k in range(0, 252, 7)]
    out = tmp_path / "rg.parquet"
    assert write_parquet(iter(batches), out) == 252
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [100, 100, 52]
    write_parquet(iter(batches), out, row_group_size=64, overwrite=True)
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [64, 64, 64, 60]
    assert pq.read_table(out).column("i").to_pylist() == list(range(252))


def test_batches_are_consumed_one_at_a_time(tmp_path):
    """Streaming: the writer asks for a batch only after writing the previous one."""
    pulled = []

    def batches():
        for k in range(5):
            pulled.append(k)
            yield {"image": [_png_bytes(Image.new("L", (3, 3), k))], "k": [k]}

    write_parquet(batches(), tmp_path / "s.parquet", row_group_size=1)
    assert pulled == list(range(5))
    assert pq.ParquetFile(tmp_path / "s.parquet").metadata.num_row_groups == 5


def test_writes_are_atomic(tmp_path, photo_paths):
    out = tmp_path / "out.parquet"

    def failing():
        yield {"image": photo_paths[:2]}
        yield {"image": photo_paths[2:4]}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_parquet(failing(), out, row_group_size=1)
    assert list(tmp_path.iterdir()) == []  # no output, no temp file left behind

    write_parquet([{"image": photo_paths[:1]}], out)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        write_parquet([{"image": photo_paths}], out)
    with pytest.raises(RuntimeError):
        write_parquet(failing(), out, overwrite=True)
    assert out.read_bytes() == before  # a failed overwrite leaves the old file whole
    assert write_parquet([{"image": photo_paths}], out, overwrite=True) == len(photo_paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]
    with pytest.raises(IsADirectoryError):
        write_parquet([{"image": photo_paths}], tmp_path)


def test_features_carry_through(tmp_path, photo_paths):
    from datasets import ClassLabel, Features, Value, load_dataset
    from datasets import Image as ImageFeature

    features = Features(
        {
            "image": ImageFeature(),
            "label": ClassLabel(names=["cat", "dog"]),
            "note": Value("string"),
        }
    )
    out = tmp_path / "f.parquet"
    write_parquet(
        [
            {"image": photo_paths[:2], "label": [0, 1], "note": [None, None]},
            {"image": photo_paths[2:3], "label": [1], "note": ["third"]},
        ],
        out,
        features=features,
    )
    ds = load_dataset("parquet", data_files=str(out), split="train")
    assert ds.features["label"] == ClassLabel(names=["cat", "dog"])
    assert ds["note"][:] == [None, None, "third"]


def test_bad_batches_are_clear_errors(tmp_path, photo_paths):
    with pytest.raises(ParquetExportError, match="image column 'img' not in the data"):
        write_parquet([{"image": photo_paths}], tmp_path / "a.parquet", image_column="img")
    with pytest.raises(ParquetExportError, match="every batch must have the same columns"):
        write_parquet(
            [{"image": photo_paths[:1], "a": [1]}, {"image": photo_paths[1:2], "b": [1]}],
            tmp_path / "b.parquet",
        )
    with pytest.raises(ParquetExportError, match="all null in the first batch"):
        write_parquet(
            [{"image": photo_paths[:1], "a": [None]}, {"image": photo_paths[1:2], "a": ["x"]}],
            tmp_path / "c.parquet",
        )
    with pytest.raises(ParquetExportError, match="has 2 values"):
        write_parquet([{"image": photo_paths[:1], "a": [1, 2]}], tmp_path / "d.parquet")
    assert list(tmp_path.iterdir()) == []


def test_empty_input_writes_an_empty_file_with_the_score_columns(tmp_path):
    from datasets import Features

    out = tmp_path / "empty.parquet"
    assert write_parquet([], out) == 0
    assert pq.read_schema(out).names == [
        "image",
        "fake_prob",
        "real_prob",
        "deepfake_label",
        "deepfake_error",
    ]
    # (`load_dataset` refuses a file with no rows, so check the features it would get.)
    features = Features.from_arrow_schema(pq.read_schema(out))
    assert type(features["image"]).__name__ == "Image"
