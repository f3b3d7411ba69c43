"""`ShardedScoringRun`: one Parquet shard per input shard, read back by pyarrow, DuckDB and
`datasets`; `kill -9` in the middle resumes to the same output; two workers share a job and
never write the same shard; other arguments and finished jobs are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from wds_shards import mixed_shards, plain_samples, write_shard

from curate import DeepfakeScorer, schema
from curate.io.parquet import curate_metadata as read_metadata
from curate.runs import (
    ResumeMismatchError,
    ScoringRun,
    ShardedScoringRun,
    shards_of,
)
from curate.sources import resolve_source
from curate.sources.webdataset import webdataset_source


class _Crash(Exception):
    pass


@pytest.fixture
def shards(tmp_path, photo_paths) -> Path:
    """Three shards (12 samples): a plain one; one with two images in a sample, one with
    none and a corrupt JPEG; a truncated last shard."""
    mixed_shards(tmp_path / "shards", photo_paths)
    return tmp_path / "shards"


def _fp32(checkpoint: str) -> DeepfakeScorer:
    return DeepfakeScorer(model=checkpoint, batch_size=2, dtype="float32")


def _tables(folder: Path) -> dict[str, object]:
    return {p.name: pq.read_table(p) for p in sorted(folder.glob("*.parquet"))}


def test_sharded_output_one_parquet_file_per_shard(tmp_path, shards, tiny_checkpoint):
    import datasets
    import duckdb

    source = webdataset_source(str(shards / "{00000..00002}.tar"))
    out = tmp_path / "scored"
    done = []
    run = ShardedScoringRun(source, _fp32(tiny_checkpoint), out, chunk_rows=2)
    assert run.run(shard_done=lambda *a: done.append(a)) == 12
    assert done == [
        ("00000.parquet", 4, 1, 3),
        ("00001.parquet", 5, 2, 3),
        ("00002.parquet", 3, 3, 3),
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "00000.parquet",
        "00001.parquet",
        "00002.parquet",
        "_manifest.json",
    ]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["done"] == {"00000.parquet": 4, "00001.parquet": 5, "00002.parquet": 3}
    # Same schema and metadata as a single-file run, the input shard as `curate.source`.
    single = tmp_path / "single.parquet"
    ScoringRun(source, _fp32(tiny_checkpoint), single).run()
    whole = pq.read_table(single)
    for name, table in _tables(out).items():
        assert table.schema.equals(whole.schema, check_metadata=False)
        meta = read_metadata(out / name)
        assert meta["curate.source"] == str(shards / name.replace(".parquet", ".tar"))
        assert meta["curate.model"] == tiny_checkpoint
    assert pq.read_table(sorted(out.glob("*.parquet"))).to_pylist() == whole.to_pylist()
    assert whole.column_names[-4:] == list(schema.SCORE_COLUMNS)

    # Read back by DuckDB and `datasets`, keys and reasons intact.
    con = duckdb.connect()
    got = con.execute(
        f"SELECT __key__, __url__, deepfake_error, fake_prob, txt "
        f"FROM read_parquet('{out}/*.parquet') ORDER BY __url__, __key__"
    ).fetchall()
    assert [r[0] for r in got] == [f"0{i:04d}" for i in range(4)] + [
        f"1{i:04d}" for i in range(5)
    ] + [f"2{i:04d}" for i in range(3)]
    errors = {r[0]: r[2] for r in got if r[2]}
    assert set(errors) == {"10002", "10003", "20002"}
    assert "no image member" in errors["10002"] and "truncated" in errors["20002"]
    assert all(r[3] is None for r in got if r[2]) and all(r[3] is not None for r in got if not r[2])
    ds = datasets.load_dataset("parquet", data_files=str(out / "*.parquet"), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["__key__"] == datasets.Value("string")
    assert sorted(ds["__key__"]) == sorted(r[0] for r in got)
    assert ds[0]["image"].size == (64, 48) and ds[0]["txt"] == "caption of 00000"


_WORKER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from curate import DeepfakeScorer
    from curate.runs import ShardedScoringRun
    from curate.sources.webdataset import REASON, webdataset_source

    pattern, out, model, kill_after, hold = sys.argv[1:6]
    scored = 0

    def progress(n):
        global scored
        scored += n
        while hold != "-" and not os.path.exists(hold):  # the test says when to go on
            time.sleep(0.05)
        if kill_after != "-" and scored >= int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)

    scorer = DeepfakeScorer(model=model, batch_size=2, dtype="float32")
    run = ShardedScoringRun(webdataset_source(pattern), scorer, out, chunk_rows=2)
    total = run.run(progress=progress)
    print(json.dumps({"total": total, "scored": scored}))
    """
)


def _worker(tmp_path, pattern, out, model, kill_after="-", hold="-") -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    args = [sys.executable, str(script), pattern, str(out), model, str(kill_after), str(hold)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_kill_9_in_the_middle_resumes_to_the_same_output(tmp_path, shards, tiny_checkpoint):
    pattern = str(shards / "*.tar")
    reference = tmp_path / "reference"
    ShardedScoringRun(
        webdataset_source(pattern), _fp32(tiny_checkpoint), reference, chunk_rows=2
    ).run()

    out = tmp_path / "out"
    killed = _worker(tmp_path, pattern, out, tiny_checkpoint, kill_after=6)
    killed.communicate(timeout=300)
    assert killed.returncode == -9
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["done"] == {"00000.parquet": 4} and "complete" not in manifest
    assert not (out / "00001.parquet").exists()
    assert [p.name for p in (out / "00001.parquet.work").glob("chunk-*")] == [
        "chunk-00000000.parquet"
    ]

    resumed = _finish(_worker(tmp_path, pattern, out, tiny_checkpoint))
    assert resumed == {"total": 12, "scored": 6}  # shard 0 and shard 1's first chunk kept
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    for name, table in _tables(reference).items():
        again = pq.read_table(out / name)
        assert again.equals(table) and again.schema.metadata == table.schema.metadata


@pytest.mark.slow
def test_two_workers_share_a_job_and_never_write_the_same_shard(
    tmp_path, photo_paths, tiny_checkpoint
):
    folder = tmp_path / "shards"
    for s in range(4):
        write_shard(folder / f"{s:05d}.tar", plain_samples(photo_paths, str(s), 4))
    pattern, out, go = str(folder / "{00000..00003}.tar"), tmp_path / "out", tmp_path / "go"
    first = _worker(tmp_path, pattern, out, tiny_checkpoint, hold=go)  # holds shard 0
    deadline = time.monotonic() + 120
    while not (out / "00000.parquet.work" / "chunk-00000000.parquet").exists():
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.1)
    second = _worker(tmp_path, pattern, out, tiny_checkpoint)
    while not all((out / f"{s:05d}.parquet").exists() for s in (1, 2, 3)):
        assert time.monotonic() < deadline and second.poll() is None, second.communicate()
        time.sleep(0.1)
    assert not (out / "00000.parquet").exists()  # the second skipped the shard held
    go.touch()
    a, b = _finish(first), _finish(second)
    # Each returns once the whole job is done; the rows each scored add up to the job.
    assert a == {"total": 16, "scored": 4} and b == {"total": 16, "scored": 12}
    assert json.loads((out / "_manifest.json").read_text())["complete"] is True
    assert sorted(os.listdir(out)) == ["00000.parquet", "00001.parquet", "00002.parquet",
                                       "00003.parquet", "_manifest.json"]  # fmt: skip


def test_sharded_run_refuses_other_arguments_and_finished_jobs(
    tmp_path, shards, tiny_checkpoint, swapped_checkpoint
):
    pattern = str(shards / "*.tar")
    out = tmp_path / "out"
    scorer = _fp32(tiny_checkpoint)

    def crash(n, calls=[]):  # noqa: B006 - counts calls across this test only
        calls.append(n)
        if len(calls) == 3:
            raise _Crash

    with pytest.raises(_Crash):
        ShardedScoringRun(webdataset_source(pattern), scorer, out).run(progress=crash)
    with pytest.raises(ResumeMismatchError, match="different model"):
        ShardedScoringRun(webdataset_source(pattern), _fp32(swapped_checkpoint), out)
    with pytest.raises(ResumeMismatchError, match="different source"):
        ShardedScoringRun(webdataset_source(pattern, image_member="png"), scorer, out)
    resumed = ShardedScoringRun(webdataset_source(pattern), scorer, out)
    assert resumed.done == {"00000.parquet": 4} and resumed.resumed_rows == 4
    assert resumed.run() == 12
    with pytest.raises(FileExistsError, match="finished already"):
        ShardedScoringRun(webdataset_source(pattern), scorer, out)
    other = ShardedScoringRun(
        webdataset_source(pattern), _fp32(swapped_checkpoint), out, overwrite=True
    )
    assert other.run() == 12
    assert read_metadata(out / "00001.parquet")["curate.model"] == swapped_checkpoint
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no curate run"):
        ShardedScoringRun(webdataset_source(pattern), scorer, tmp_path / "mine")
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        ShardedScoringRun(webdataset_source(pattern), scorer, tmp_path / "file")


def test_parquet_shards_in_parquet_shards_out(tmp_path, shards, tiny_checkpoint):
    scored = tmp_path / "scored"
    ShardedScoringRun(webdataset_source(str(shards)), _fp32(tiny_checkpoint), scored).run()
    # A folder of Parquet shards (with an image column) is a sharded source too.
    again = tmp_path / "again"
    source = resolve_source(str(scored))
    run = ShardedScoringRun(source, _fp32(tiny_checkpoint), again)
    assert run.names == ["00000.parquet", "00001.parquet", "00002.parquet"]
    assert run.run() == 12
    for name, table in _tables(scored).items():
        assert pq.read_table(again / name).column("__key__").equals(table.column("__key__"))
        assert read_metadata(again / name)["curate.source"] == str(scored / name)


def test_only_sources_made_of_shards_split(tmp_path, shards, image_folder):
    with pytest.raises(ValueError, match="folder source, not shards"):
        shards_of(resolve_source(image_folder))
    with pytest.raises(ValueError, match="--limit applies to a single output file"):
        shards_of(webdataset_source(str(shards), limit=3))
    assert [s.location for s in shards_of(webdataset_source(str(shards)))] == [
        str(p) for p in sorted(shards.glob("*.tar"))
    ]
