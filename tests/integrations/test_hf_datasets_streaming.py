"""Streamed `datasets`: `IterableDataset.map(scorer, batched=True)` and `score_dataset` on a
stream (WebDataset shards and Parquet read with `streaming=True`), typed columns whatever the
first batch holds, and a stream written out as Parquet shards."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from wds_shards import mixed_shards

from curate import DeepfakeScorer, schema
from curate.integrations.hf_datasets import score_dataset, write_parquet_shards
from curate.io.parquet import curate_metadata

BROKEN = {"bytes": b"not an image at all", "path": "broken.jpg"}


def _png(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return {"bytes": buf.getvalue(), "path": f"{seed}.png"}


def _table(n: int, broken_at: set[int]) -> datasets.Dataset:
    rows = [BROKEN if i in broken_at else _png(i) for i in range(n)]
    features = datasets.Features({"image": datasets.Image(), "i": datasets.Value("int32")})
    return datasets.Dataset.from_dict({"image": rows, "i": list(range(n))}, features=features)


def _stream(n: int, broken_at: set[int]) -> datasets.IterableDataset:
    return _table(n, broken_at).to_iterable_dataset(num_shards=2)


@pytest.fixture(scope="module")
def scorer(tiny_checkpoint) -> DeepfakeScorer:
    return DeepfakeScorer(model=tiny_checkpoint, batch_size=2, dtype="float32")


@pytest.mark.parametrize("broken_at", [{0, 1, 2, 3}, {5}, set(range(10))])
def test_iterable_map_with_unreadable_rows_anywhere(tmp_path, scorer, broken_at):
    stream = _stream(10, broken_at).cast_column("image", datasets.Image(decode=False))
    features = stream.features.copy()
    features.update(scorer.features)
    mapped = stream.map(scorer, batched=True, batch_size=4, features=features)
    rows = list(mapped)
    assert [r["i"] for r in rows] == list(range(10))
    for r in rows:
        if r["i"] in broken_at:
            assert r[schema.ERROR] and r[schema.FAKE_PROB] is None
        else:
            assert r[schema.ERROR] is None and 0 <= r[schema.FAKE_PROB] <= 1
            assert r[schema.LABEL] == schema.label_for(r[schema.FAKE_PROB])
    # Written out, the columns have their contract types whatever the first rows held.
    (path,) = write_parquet_shards(mapped, tmp_path / "out", rows_per_shard=10)
    written = pq.read_schema(path)
    assert written.field(schema.FAKE_PROB).type == schema.arrow_type(schema.FAKE_PROB)
    assert written.field(schema.ERROR).type == schema.arrow_type(schema.ERROR)


def test_score_dataset_accepts_a_stream_and_gives_the_same_scores(tmp_path, scorer):
    stream = _stream(9, {0, 4})
    scored = score_dataset(stream, scorer, map_batch_size=4)
    assert isinstance(scored, datasets.IterableDataset)
    assert isinstance(scored.features["image"], datasets.Image) and scored.features["image"].decode
    assert scored.features[schema.FAKE_PROB] == datasets.Value("float32")
    streamed = list(scored.cast_column("image", datasets.Image(decode=False)))
    assert [r["i"] for r in streamed] == list(range(9))
    whole = score_dataset(_table(9, {0, 4}), scorer)
    assert [r[schema.FAKE_PROB] for r in streamed] == whole[schema.FAKE_PROB]
    assert [r[schema.ERROR] for r in streamed] == whole[schema.ERROR]
    second = next(iter(scored.skip(1)))  # the image decoded, as the feature says
    assert second["image"].size == (32, 24) and second[schema.ERROR] is None
    # Written out, typed whatever the first rows held (row 0 is unreadable).
    (path,) = write_parquet_shards(scored, tmp_path / "out", rows_per_shard=9, batch_size=2)
    assert pq.read_schema(path).field(schema.FAKE_PROB).type == schema.arrow_type(schema.FAKE_PROB)
    with pytest.raises(ValueError, match="split_dataset_by_node"):
        score_dataset(stream, scorer, num_proc=2)
    with pytest.raises(ValueError, match="image column 'jpg' not found"):
        score_dataset(stream, DeepfakeScorer(model=scorer.model, image_column="jpg"))


def test_webdataset_shards_streamed_by_datasets(tmp_path, photo_paths, scorer):
    shards = mixed_shards(tmp_path / "shards", photo_paths)[:2]  # datasets stops at truncation
    stream = datasets.load_dataset(
        "webdataset", data_files={"train": [str(p) for p in shards]}, split="train", streaming=True
    )
    jpg_scorer = DeepfakeScorer(
        model=scorer.model, batch_size=2, dtype="float32", image_column="jpg"
    )
    scored = score_dataset(stream, jpg_scorer, map_batch_size=4)
    rows = list(scored.cast_column("jpg", datasets.Image(decode=False)))
    assert [r["__key__"] for r in rows] == [f"0{i:04d}" for i in range(4)] + [
        f"1{i:04d}" for i in range(5)
    ]
    errors = {r["__key__"]: r[schema.ERROR] for r in rows if r[schema.ERROR]}
    assert set(errors) == {"10002", "10003"}  # no image; a corrupt JPEG
    assert all(r[schema.LABEL] == schema.label_for(r[schema.FAKE_PROB]) for r in rows[:4])


def test_parquet_streamed_and_written_back_as_shards(tmp_path, scorer):
    source = tmp_path / "in.parquet"
    _table(12, {3}).to_parquet(str(source))
    stream = datasets.load_dataset("parquet", data_files=str(source), split="train", streaming=True)
    scored = score_dataset(stream, scorer)
    out = tmp_path / "scored"
    paths = write_parquet_shards(scored, out, rows_per_shard=5, metadata=scorer.metadata())
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "00000.parquet",
        "00001.parquet",
        "00002.parquet",
    ]
    assert [pq.ParquetFile(p).metadata.num_rows for p in paths] == [5, 5, 2]
    assert sorted(p.name for p in out.iterdir()) == [
        "00000.parquet",
        "00001.parquet",
        "00002.parquet",
    ]
    assert curate_metadata(paths[0])["curate.model"] == scorer.model
    back = pq.read_table(paths).to_pylist()
    assert [r["i"] for r in back] == list(range(12))
    # The image bytes as read, never re-encoded.
    assert [r["image"]["bytes"] for r in back] == [
        (BROKEN if i == 3 else _png(i))["bytes"] for i in range(12)
    ]
    assert back[3][schema.ERROR] and back[3][schema.FAKE_PROB] is None
    reread = datasets.load_dataset("parquet", data_files=str(out / "*.parquet"), split="train")
    assert isinstance(reread.features["image"], datasets.Image)
    assert reread.features[schema.FAKE_PROB] == datasets.Value("float32")
    with pytest.raises(FileExistsError):
        write_parquet_shards(scored, out, rows_per_shard=5)
