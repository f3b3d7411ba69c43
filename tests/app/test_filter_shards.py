"""`curate.app.filter` on a folder of scored shards: one output shard per scored shard in each
outcome's folder, as Parquet or as the WebDataset tar shards the rows were scored from."""

from __future__ import annotations

import os
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from wds_shards import mixed_shards

from curate import DeepfakeScorer, schema
from curate.app.filter import FilterRequest, filter_scored
from curate.app.options import RequestError
from curate.runs import ShardedScoringRun
from curate.sources.webdataset import webdataset_source


@pytest.fixture
def scored(tmp_path, photo_paths, tiny_checkpoint, monkeypatch):
    """Three WebDataset shards scored into `scored/` (12 rows, 3 with reasons), from inside
    tmp_path (as a user runs it: shard paths relative to the working folder)."""
    monkeypatch.chdir(tmp_path)
    mixed_shards(tmp_path / "shards", photo_paths)
    scorer = DeepfakeScorer(model=tiny_checkpoint, batch_size=2, dtype="float32")
    ShardedScoringRun(webdataset_source("shards/{00000..00002}.tar"), scorer, "scored").run()
    return tmp_path / "scored"


def _keys(folder) -> dict[str, list[str]]:
    return {
        name: pq.read_table(os.path.join(folder, name)).column("__key__").to_pylist()
        for name in sorted(os.listdir(folder))
        if name.endswith(".parquet")
    }


def test_parquet_shards_split_by_the_rule(tmp_path, scored):
    result = filter_scored(
        FilterRequest(scored, tmp_path / "kept", removed=tmp_path / "removed", threshold=0.6)
    )
    assert result.shards == 3 and result.counts.total == 12 and result.counts.unscored == 3
    for name in ("00000.parquet", "00001.parquet", "00002.parquet"):
        table = pq.read_table(scored / name)
        probs = table.column(schema.FAKE_PROB).to_pylist()
        keys = table.column("__key__").to_pylist()
        kept = pq.read_table(tmp_path / "kept" / name).column("__key__").to_pylist()
        removed = pq.read_table(tmp_path / "removed" / name).column("__key__").to_pylist()
        unscored = pq.read_table(tmp_path / "kept.unscored" / name).column("__key__").to_pylist()
        assert kept == [k for k, p in zip(keys, probs, strict=True) if p is not None and p < 0.6]
        assert removed == [
            k for k, p in zip(keys, probs, strict=True) if p is not None and p >= 0.6
        ]
        assert unscored == [k for k, p in zip(keys, probs, strict=True) if p is None]
        assert pq.read_schema(tmp_path / "kept" / name).metadata[b"curate.outcome"] == b"keep"
    assert sorted(os.listdir(tmp_path / "kept.unscored")) == sorted(
        ["00000.parquet", "00001.parquet", "00002.parquet"]
    )


def test_webdataset_shards_keep_every_member_byte_identical(tmp_path, scored):
    result = filter_scored(
        FilterRequest(
            scored,
            tmp_path / "kept",
            removed=tmp_path / "removed",
            review_band=(0.3, 0.7),
            format="webdataset",
        )
    )
    counts = result.counts
    assert counts.keep + counts.remove + counts.review + counts.unscored == 12
    assert sorted(os.listdir(tmp_path / "kept")) == ["00000.tar", "00001.tar", "00002.tar"]
    original = {}
    for shard in sorted((tmp_path / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:  # the truncated one: what is whole of it
            try:
                for m in tar:
                    original[m.name] = tar.extractfile(m).read()
            except tarfile.ReadError:
                pass
    seen = []
    for folder in ("kept", "removed", "kept.review", "kept.unscored"):
        for shard in sorted((tmp_path / folder).glob("*.tar")):
            for sample in wds.WebDataset(str(shard), shardshuffle=False, empty_check=False):
                seen.append(sample["__key__"])
                for ext, data in sample.items():
                    if not ext.startswith("__"):
                        assert data == original[f"{sample['__key__']}.{ext}"]
    # Every sample lands in exactly one folder (the truncated shard's cut-off sample has no
    # whole member but its reason row, so it is counted, not copied).
    assert sorted(seen) == sorted(k for k in _all_keys(scored) if k != "20002")
    kept_keys = [
        s["__key__"]
        for s in wds.WebDataset(str(tmp_path / "kept" / "00000.tar"), shardshuffle=False)
    ]
    table = pq.read_table(scored / "00000.parquet").to_pydict()
    assert kept_keys == [
        k for k, p in zip(table["__key__"], table[schema.FAKE_PROB], strict=True) if p < 0.3
    ]


def _all_keys(folder) -> list[str]:
    return [k for keys in _keys(folder).values() for k in keys]


def test_bad_requests_write_nothing(tmp_path, scored):
    with pytest.raises(RequestError, match="--format webdataset filters a folder"):
        filter_scored(
            FilterRequest(scored / "00000.parquet", tmp_path / "k.parquet", format="webdataset")
        )
    with pytest.raises(RequestError, match="--format must be"):
        filter_scored(FilterRequest(scored, tmp_path / "kept", format="tfrecord"))
    (tmp_path / "file").write_text("")
    with pytest.raises(RequestError, match="is a file; name a folder"):
        filter_scored(FilterRequest(scored, tmp_path / "file"))
    with pytest.raises(RequestError, match="cannot be the scored folder"):
        filter_scored(FilterRequest(scored, scored))
    filter_scored(FilterRequest(scored, tmp_path / "kept"))
    with pytest.raises(RequestError, match="already holds the shard 00000"):
        filter_scored(FilterRequest(scored, tmp_path / "kept"))
    assert filter_scored(FilterRequest(scored, tmp_path / "kept", overwrite=True)).shards == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(RequestError, match="holds no scored Parquet shards"):
        filter_scored(FilterRequest(tmp_path / "empty", tmp_path / "k2"))
