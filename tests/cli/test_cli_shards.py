"""`curate score` / `curate filter` on WebDataset shards, through the real command line: a
folder of output shards, `kill -9` and a re-run giving the uninterrupted output, filtered tar
shards with members byte-identical, and one-line errors for what cannot work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import CLI_ENV
from conftest import run_curate as curate
from wds_shards import mixed_shards, plain_samples, write_shard

FP32 = ("--dtype", "float32", "--batch-size", "2", "--device", "cpu")


def test_score_then_filter_shards(tmp_path, photo_paths, tiny_checkpoint):
    mixed_shards(tmp_path / "shards", photo_paths)
    proc = curate(
        "score", "shards/{00000..00002}.tar", "-o", "scored", "--model", tiny_checkpoint, *FP32,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Scored 12 images -> scored (3 shards)" in proc.stdout
    assert sorted(os.listdir(tmp_path / "scored")) == [
        "00000.parquet", "00001.parquet", "00002.parquet", "_manifest.json",
    ]  # fmt: skip
    table = pq.read_table(tmp_path / "scored" / "00001.parquet")
    assert table.column("__key__").to_pylist() == [f"1{i:04d}" for i in range(5)]
    assert table.column("deepfake_error").null_count == 3

    again = curate(
        "score", "shards", "-o", "scored", "--model", tiny_checkpoint, *FP32, cwd=tmp_path
    )
    assert again.returncode == 2 and "finished already" in again.stderr

    proc = curate(
        "filter", "scored", "-o", "kept", "--removed", "removed", "--format", "webdataset",
        "--unscored", "drop", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "3 shards in" in proc.stdout
    members = {}
    with tarfile.open(tmp_path / "shards" / "00000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    kept = list(
        wds.WebDataset(str(tmp_path / "kept" / "00000.tar"), shardshuffle=False, empty_check=False)
    )
    removed = list(
        wds.WebDataset(
            str(tmp_path / "removed" / "00000.tar"), shardshuffle=False, empty_check=False
        )
    )
    assert len(kept) + len(removed) == 4
    for sample in kept + removed:
        for ext in ("jpg", "json", "txt"):
            assert sample[ext] == members[f"{sample['__key__']}.{ext}"]


def test_one_line_errors(tmp_path, photo_paths, tiny_checkpoint, image_folder):
    write_shard(tmp_path / "s" / "00000.tar", plain_samples(photo_paths, "0", 2))
    cases = [
        (["score", image_folder, "-o", tmp_path / "out"], "name it with a .parquet extension"),
        (["score", image_folder, "-o", tmp_path / "o.parquet", "--image-member", "png"],
         "--image-member is for WebDataset shards"),
        (["score", tmp_path / "s", "-o", tmp_path / "out", "--limit", "1"],
         "--limit applies to a single output file"),
        (["score", tmp_path / "s" / "{00000..00003}.tar", "-o", tmp_path / "out"],
         "3 of the 4 shards"),
        (["filter", tmp_path / "s", "-o", tmp_path / "k"], "holds no scored Parquet shards"),
    ]  # fmt: skip
    for args, message in cases:
        proc = curate(*args, "--model", tiny_checkpoint) if args[0] == "score" else curate(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_output(tmp_path, photo_paths, tiny_checkpoint):
    for s in range(24):
        write_shard(tmp_path / "shards" / f"{s:05d}.tar", plain_samples(photo_paths, f"{s:02d}", 6))
    args = ("score", "shards", "--model", tiny_checkpoint, *FP32, "--chunk-rows", "2")
    reference = curate(*args, "-o", "reference", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "curate.cli", *args, "-o", "out"],
        cwd=tmp_path, env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (tmp_path / "out" / "00001.parquet").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads((tmp_path / "out" / "_manifest.json").read_text())["done"]
    # Killed in the middle (possibly between writing a shard and recording it: resumed too).
    assert 1 <= len(done) < 24

    rerun = curate(*args, "-o", "out", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"Resuming: {len(done)} of 24 shards already scored" in rerun.stderr
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(tmp_path / "reference"))
    for name in os.listdir(tmp_path / "reference"):
        if name.endswith(".parquet"):
            a = pq.read_table(tmp_path / "out" / name)
            b = pq.read_table(tmp_path / "reference" / name)
            assert a.equals(b) and a.schema.metadata == b.schema.metadata, name
