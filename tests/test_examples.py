"""The examples run as a user would run them (in a subprocess, against a local checkpoint)."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
from conftest import REPO


def test_datasets_pipeline_example(tiny_checkpoint, image_folder, tmp_path):
    out = tmp_path / "kept.parquet"
    env = dict(os.environ, CURATE_MODEL=tiny_checkpoint)
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "datasets_pipeline.py"),
            str(image_folder),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    summary = next(line for line in run.stdout.splitlines() if line.startswith("kept "))
    kept = int(summary.split()[1].rstrip(","))
    table = pq.read_table(out)
    assert table.num_rows == kept
    assert all(p < 0.5 for p in table.column("fake_prob").to_pylist())
    assert table.schema.metadata[b"curate.model"].decode() == f"{tiny_checkpoint}"
