"""`--engine ray` for shards (`score_shards`): on a local cluster, the same output shards as a
local `ShardedScoringRun` (rows, order, types, metadata but `curate.engine`), sharing its
manifest, so a job started locally and finished on Ray is the job a local run writes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from wds_shards import mixed_shards, write_shard

from curate import DeepfakeScorer
from curate.runs import ShardedScoringRun
from curate.sources.webdataset import webdataset_source

ray = pytest.importorskip("ray")

from curate.integrations.ray import score_shards  # noqa: E402

SETTINGS = dict(device="cpu", dtype="float32", batch_size=2)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _same_shards(ray_dir, local_dir) -> None:
    names = sorted(p.name for p in local_dir.glob("*.parquet"))
    assert sorted(p.name for p in ray_dir.glob("*.parquet")) == names
    for name in names:
        local, got = pq.read_table(local_dir / name), pq.read_table(ray_dir / name)
        assert got.schema.equals(local.schema, check_metadata=False)
        meta_local, meta_ray = dict(local.schema.metadata), dict(got.schema.metadata)
        assert meta_ray.pop(b"curate.engine") == b"ray" and meta_ray == meta_local
        floats = [f.name for f in local.schema if pa.types.is_floating(f.type)]
        rest = [c for c in local.column_names if c not in floats]
        assert got.select(rest).equals(local.select(rest)), name
        for column in floats:  # the same model on the same rows, batched differently
            a = np.array(got.column(column).to_pylist(), dtype=float)
            b = np.array(local.column(column).to_pylist(), dtype=float)
            np.testing.assert_allclose(a, b, atol=1e-6, err_msg=f"{name} {column}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_shards_are_the_local_shards(cluster, tmp_path, photo_paths, tiny_checkpoint):
    folder = tmp_path / "shards"
    mixed_shards(folder, photo_paths)
    write_shard(folder / "00003.tar", [])  # an empty shard: an empty output shard
    local = tmp_path / "local"
    scorer = DeepfakeScorer(model=tiny_checkpoint, **SETTINGS)
    ShardedScoringRun(webdataset_source(str(folder)), scorer, local).run()

    out = tmp_path / "ray"
    meta = {"curate.engine": "ray"}  # what a Ray job records; the local half must agree
    calls = []

    def stop_after_first_shard(n):
        calls.append(n)
        if sum(calls) > 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a job started locally, interrupted in shard 2
        ShardedScoringRun(webdataset_source(str(folder)), scorer, out, metadata=meta).run(
            progress=stop_after_first_shard
        )
    rows = score_shards(str(folder), out, model=tiny_checkpoint, **SETTINGS)
    assert rows == 12
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["done"]["00003.parquet"] == 0
    assert pq.read_table(out / "00001.parquet").column("deepfake_error").null_count == 3
    _same_shards(out, local)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_score_use_case_with_engine_ray(cluster, tmp_path, photo_paths, tiny_checkpoint):
    """`curate score SHARDS -o FOLDER --engine ray`, as the app runs it (the CLI is a thin
    layer over it): the Ray output shards, counted like a local run's."""
    from curate.app.score import ScoreRequest, score

    mixed_shards(tmp_path / "shards", photo_paths)
    request = ScoreRequest(
        source=str(tmp_path / "shards"),
        output=tmp_path / "out",
        model=tiny_checkpoint,
        engine="ray",
        **SETTINGS,
    )
    result = score(request)
    assert result.shards == 3 and result.rows == 12 and result.unreadable == 3
    assert result.fake + result.real == 9 and result.engine == "ray"
    meta = pq.read_schema(tmp_path / "out" / "00002.parquet").metadata
    assert meta[b"curate.engine"] == b"ray"
