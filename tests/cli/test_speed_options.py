"""`--compile` and `--quantize` on the real command line: a compile is announced on stderr
beside the progress bar and scores as the eager model does, `never` compiles nothing, int8
runs and is recorded in the output's metadata, and every option that cannot work is one line
before the model loads. A model load with torchao installed prints none of its import noise."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import CLI_ENV
from test_cli import assert_one_line_error

from curate.io.parquet import curate_metadata
from curate.pipeline.quantize import INSTALL_HINT, cpu_has_int8_units


def _curate(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "curate.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**CLI_ENV, **(env or {})},
        timeout=600,
    )


def _cache_files(cache) -> int:
    return sum(p.is_file() for p in cache.rglob("*")) if cache.exists() else 0


@pytest.mark.slow
def test_compile_always_is_announced_and_scores_as_never(tiny_checkpoint, image_folder, tmp_path):
    runs = {}
    for mode in ("always", "never"):
        cache = tmp_path / f"inductor-{mode}"
        out = tmp_path / f"{mode}.parquet"
        proc = _curate(
            "score", image_folder, "-o", out, "--model", tiny_checkpoint, "--dtype", "float32",
            "--batch-size", "2", "--compile", mode,
            env={"TORCHINDUCTOR_CACHE_DIR": str(cache)},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs[mode] = (proc.stderr, _cache_files(cache), pq.read_table(out))
    stderr, cached, table = runs["always"]
    assert f"Compiling {tiny_checkpoint} for batches of 2 on cpu" in stderr
    assert f"Compiled {tiny_checkpoint} in " in stderr
    assert cached > 0  # inductor really compiled
    stderr_never, cached_never, table_never = runs["never"]
    assert "Compil" not in stderr_never and cached_never == 0
    np.testing.assert_allclose(
        table["fake_prob"].to_numpy(), table_never["fake_prob"].to_numpy(), atol=1e-5
    )
    assert table.num_rows == table_never.num_rows == len(list(image_folder.iterdir()))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--compile", "fast"], "--compile must be auto, always or never, got 'fast'"),
        (["--quantize", "int4"], "--quantize takes int8 (or is left out), got 'int4'"),
        (["--quantize", "int8", "--compile", "never"], "--quantize int8 only pays compiled"),
        (["--quantize", "int8", "--device", "cuda"], "cuda"),
    ],
)
def test_speed_options_that_cannot_work_are_one_line(
    args, match, tiny_checkpoint, photo_paths, tmp_path
):
    out = tmp_path / "out.parquet"
    proc = _curate("score", photo_paths[0], "-o", out, "--model", tiny_checkpoint, *args)
    assert_one_line_error(proc, 2, match)
    assert not out.exists()


def test_int8_without_torchao_says_what_to_install(tiny_checkpoint, photo_paths, tmp_path):
    if not cpu_has_int8_units():
        pytest.skip("this CPU has no int8 units; the CPU check answers first")
    # A torchao that cannot be imported (as a broken install would be) shadows the real one.
    blocked = tmp_path / "blocked" / "torchao"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('torchao is blocked here')\n")
    proc = _curate(
        "eval", photo_paths[0], "--out-dir", tmp_path / "report", "--model", tiny_checkpoint,
        "--quantize", "int8",
        env={"PYTHONPATH": str(blocked.parent)},
    )  # fmt: skip
    assert_one_line_error(proc, 2, f"quantize='int8' needs torchao: {INSTALL_HINT}")


@pytest.mark.slow
def test_quantize_int8_scores_and_is_recorded(tiny_checkpoint, image_folder, tmp_path):
    if importlib.util.find_spec("torchao") is None or not cpu_has_int8_units():
        pytest.skip("int8 needs torchao and a CPU with int8 units")
    out = tmp_path / "int8.parquet"
    proc = _curate(
        "score", image_folder, "-o", out, "--model", tiny_checkpoint, "--quantize", "int8",
        "--batch-size", "2",
        env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"Compiled {tiny_checkpoint} in " in proc.stderr
    table = pq.read_table(out)
    assert table.num_rows == len(list(image_folder.iterdir()))
    assert table["deepfake_error"].null_count == table.num_rows
    assert curate_metadata(out)["curate.quantize"] == "int8"


def test_a_model_load_prints_no_torchao_import_noise(tiny_checkpoint, photo_paths):
    if importlib.util.find_spec("torchao") is None:
        pytest.skip("torchao is not installed: nothing to keep quiet")
    proc = _curate("score", photo_paths[0], "--model", tiny_checkpoint)
    assert proc.returncode == 0, proc.stderr
    for noise in ("Failed to load", "register_constant", "torchao"):
        assert noise not in proc.stderr, proc.stderr
