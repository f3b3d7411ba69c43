"""The `curate` command, run as a real subprocess on real folders, Parquet files and datasets.

Outputs are read back with `datasets`, pyarrow and DuckDB; image bytes must be identical to
the input files; `kill -9` in the middle of `curate score` and a re-run must give the same
file as an uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CLI_ENV
from conftest import run_curate as curate
from PIL import Image

from curate import DeepfakeScorer
from curate.io.parquet import curate_metadata as read_metadata

REPO = Path(__file__).resolve().parents[2]


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, match: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert match in lines[0], lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photo_paths, broken_images) -> Path:
    """The example photos, one in a subfolder, two unreadable files, and a file to ignore."""
    d = tmp_path_factory.mktemp("cli") / "images"
    (d / "nested").mkdir(parents=True)
    for p in photo_paths:
        shutil.copy(p, d)
    shutil.copy(photo_paths[0], d / "nested" / "copy.jpg")
    shutil.copy(broken_images["truncated"], d / "nested" / "truncated.jpg")
    shutil.copy(broken_images["not_an_image"], d / "notes.png")
    (d / "README.txt").write_text("not an image, not scored")
    return d


@pytest.fixture(scope="module")
def scored(folder, tiny_checkpoint) -> tuple[Path, subprocess.CompletedProcess]:
    out = folder.parent / "scored.parquet"
    proc = curate(
        "score", folder, "-o", out, "--model", tiny_checkpoint, "--batch-size", "2",
        "--dtype", "float32",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_score_folder_read_back_by_three_readers(folder, scored, tiny_checkpoint):
    import duckdb
    from datasets import Image as ImageFeature
    from datasets import load_dataset

    out, proc = scored
    files = sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in (".jpg", ".png")
    )
    assert len(files) == 8
    # Progress bar on stderr, summary on stdout.
    assert "Scoring" in proc.stderr and "img/s" in proc.stderr
    assert "Scoring" not in proc.stdout
    assert "8" in proc.stdout and "unreadable" in proc.stdout

    table = pq.read_table(out)
    assert [r["path"] for r in table.column("image").to_pylist()] == files  # input order
    for row in table.column("image").to_pylist():
        assert row["bytes"] == (folder / row["path"]).read_bytes()

    # The CLI gives exactly what the library scorer gives for the same files.
    # Same batches, same dtype: same floats.
    scorer = DeepfakeScorer(model=tiny_checkpoint, batch_size=2, dtype="float32")
    expected = scorer.score_images([folder / f for f in files])
    assert table.column("fake_prob").to_pylist() == expected["fake_prob"]
    errors = dict(zip(files, table.column("deepfake_error").to_pylist(), strict=True))
    assert {f for f, e in errors.items() if e} == {"nested/truncated.jpg", "notes.png"}
    assert "not a recognised image" in errors["notes.png"]
    assert "cannot decode" in errors["nested/truncated.jpg"]

    meta = read_metadata(out)
    assert meta["curate.model"] == tiny_checkpoint and meta["curate.dtype"] == "float32"
    assert meta["curate.source"] == str(folder)
    assert "curate.version" in meta

    got = duckdb.sql(
        f"SELECT image.path, image.bytes, fake_prob, deepfake_error FROM read_parquet('{out}')"
    ).fetchall()
    assert [r[0] for r in got] == files
    assert all(bytes(r[1]) == (folder / r[0]).read_bytes() for r in got)
    assert sum(r[2] is None for r in got) == 2

    ds = load_dataset("parquet", data_files=str(out), split="train")
    assert isinstance(ds.features["image"], ImageFeature)
    first = ds[0]["image"]
    assert np.array_equal(np.asarray(first), np.asarray(Image.open(folder / files[0])))
    assert ds["deepfake_label"][:] == table.column("deepfake_label").to_pylist()


def test_filter_counts_add_up(scored, tmp_path):
    out, _ = scored
    probs = sorted(p for p in pq.read_table(out).column("fake_prob").to_pylist() if p is not None)
    lo, t, hi = probs[1], probs[3], probs[5]
    kept, removed = tmp_path / "kept.parquet", tmp_path / "removed.parquet"
    proc = curate(
        "filter", out, "-o", kept, "--removed", removed, "--threshold", t,
        "--review-band", lo, hi,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = {
        "kept": kept,
        "removed": removed,
        "review": tmp_path / "kept.review.parquet",
        "unscored": tmp_path / "kept.unscored.parquet",
    }
    counts = {k: pq.ParquetFile(p).metadata.num_rows for k, p in files.items()}
    assert sum(counts.values()) == 8
    assert counts["unscored"] == 2 and counts["review"] == 4 and counts["kept"] == 1
    for name, n in counts.items():
        assert f"{name} {n} " in " ".join(proc.stdout.replace("│", " ").split()) + " "
    assert "total 8" in " ".join(proc.stdout.replace("│", " ").split())
    all_paths = [r["path"] for f in files.values() for r in pq.read_table(f)["image"].to_pylist()]
    assert sorted(all_paths) == sorted(
        r["path"] for r in pq.read_table(out)["image"].to_pylist()
    )  # every row exactly once
    assert read_metadata(kept)["curate.threshold"] == repr(t)

    # --unscored keep: unreadable rows stay with the kept ones; no unscored file.
    kept2 = tmp_path / "kept2.parquet"
    proc = curate("filter", out, "-o", kept2, "--threshold", t, "--unscored", "keep")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "kept2.unscored.parquet").exists()
    kept_rows = pq.read_table(kept2).column("fake_prob").to_pylist()
    assert sum(p is None for p in kept_rows) == 2
    assert len(kept_rows) == 2 + sum(p < t for p in probs)
    assert "2 rows had unreadable images (kept)" in proc.stdout


def test_kill_minus_9_then_resume_gives_the_uninterrupted_file(
    tmp_path, photo_paths, tiny_checkpoint
):
    src = tmp_path / "forty"
    src.mkdir()
    for i in range(40):
        img = Image.open(photo_paths[i % len(photo_paths)]).convert("RGB")
        img.rotate(i * 9).resize((400 + i, 300)).save(src / f"img{i:02d}.jpg", quality=90)
    args = ["--model", tiny_checkpoint, "--batch-size", "2", "--chunk-rows", "4"]

    reference = tmp_path / "reference.parquet"
    assert curate("score", src, "-o", reference, *args).returncode == 0

    out = tmp_path / "out.parquet"
    work = Path(f"{out}.work")
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate.cli", "score", str(src), "-o", str(out), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=CLI_ENV,
    )
    deadline = time.monotonic() + 120
    while not list(work.glob("chunk-*.parquet")):
        assert proc.poll() is None, "curate score ended before writing its first chunk"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "the run finished before it was killed; the test proves nothing"
    done = len(list(work.glob("chunk-*.parquet")))
    assert 1 <= done < 10
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["rows"] == 40 and manifest["scoring"]["model"] == tiny_checkpoint

    resumed = curate("score", src, "-o", out, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming: {done * 4} rows already scored" in resumed.stderr
    assert not work.exists()
    a, b = pq.read_table(out), pq.read_table(reference)
    assert a.schema.equals(b.schema)  # metadata included
    assert a.to_pydict() == b.to_pydict()  # same rows, same order, each once
    paths = [r["path"] for r in a.column("image").to_pylist()]
    assert paths == sorted(p.name for p in src.iterdir())


def test_parquet_source_keeps_its_columns(tmp_path, photo_paths, tiny_checkpoint):
    from datasets import load_dataset

    src = tmp_path / "in.parquet"
    pics = [{"bytes": Path(p).read_bytes(), "path": Path(p).name} for p in photo_paths]
    pq.write_table(
        pa.table({"id": [10, 11, 12, 13, 14], "caption": list("abcde"), "pic": pics}),
        src,
        row_group_size=2,
    )
    out = tmp_path / "out.parquet"
    proc = curate(
        "score", src, "-o", out, "--model", tiny_checkpoint, "--image-column", "pic",
        "--limit", "3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out)
    assert table.column_names == [
        "id", "caption", "pic", "fake_prob", "real_prob", "deepfake_label", "deepfake_error"
    ]  # fmt: skip
    assert table.column("id").to_pylist() == [10, 11, 12]
    assert table.column("pic").to_pylist() == pics[:3]
    ds = load_dataset("parquet", data_files=str(out), split="train")
    assert type(ds.features["pic"]).__name__ == "Image"

    bad = curate("score", src, "-o", tmp_path / "x.parquet", "--image-column", "photo")
    assert_one_line_error(bad, 2, "has no column 'photo'")


def test_saved_dataset_source(tmp_path, photo_paths, tiny_checkpoint):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, load_dataset
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["real", "fake"])})
    DatasetDict(
        train=Dataset.from_dict({"image": photo_paths, "label": [0] * 5}, features=features),
        test=Dataset.from_dict({"image": photo_paths[:3], "label": [1, 0, 1]}, features=features),
    ).save_to_disk(tmp_path / "saved")
    out = tmp_path / "test.parquet"
    proc = curate(
        "score", tmp_path / "saved", "--split", "test", "-o", out, "--model", tiny_checkpoint
    )
    assert proc.returncode == 0, proc.stderr
    ds = load_dataset("parquet", data_files=str(out), split="train")
    assert ds.features["label"] == ClassLabel(names=["real", "fake"])
    assert ds["label"][:] == [1, 0, 1]
    stored = pq.read_table(out).column("image").to_pylist()
    assert [r["bytes"] for r in stored] == [Path(p).read_bytes() for p in photo_paths[:3]]


def test_single_image_prints_probabilities(photo_paths, tiny_checkpoint):
    proc = curate("score", photo_paths[0], "--model", tiny_checkpoint, "--dtype", "float32")
    assert proc.returncode == 0, proc.stderr
    expected = DeepfakeScorer(model=tiny_checkpoint, dtype="float32").score_images([photo_paths[0]])
    words = " ".join(proc.stdout.replace("│", " ").split())
    assert f"Fake {expected['fake_prob'][0]:.3f}" in words
    assert f"Real {expected['real_prob'][0]:.3f}" in words
    assert f"prediction: {expected['deepfake_label'][0]}" in words


def test_runtime_and_argument_errors_are_one_line(tmp_path, folder, tiny_checkpoint):
    out = tmp_path / "o.parquet"
    assert_one_line_error(curate("score", tmp_path / "nope", "-o", out), 2, "does not exist")
    assert_one_line_error(
        curate("score", folder, "-o", out, "--model", tmp_path / "no-model"), 1, "does not exist"
    )
    assert not out.exists() and not Path(f"{out}.work").exists()


def test_output_in_a_missing_folder_fails_before_the_model_loads(tmp_path, folder):
    out = tmp_path / "nodir" / "out.parquet"
    # A model that cannot load would exit 1: exit 2 shows the output was checked first.
    proc = curate("score", folder, "-o", out, "--model", tmp_path / "no-model")
    assert_one_line_error(proc, 2, f"the folder {tmp_path / 'nodir'} does not exist")
    assert ".lock" not in proc.stderr and "Loading" not in proc.stderr
    assert not (tmp_path / "nodir").exists()


def test_outputs_that_are_not_parquet_are_refused(tmp_path, folder, scored, tiny_checkpoint):
    scored_path, _ = scored
    kept = tmp_path / "kept.parquet"
    proc = curate("score", folder, "-o", tmp_path / "out.csv", "--model", tiny_checkpoint)
    assert_one_line_error(proc, 2, "out.csv: curate writes Parquet files")
    band = ["--review-band", "0.3", "0.7"]
    for args, option in [
        (["-o", tmp_path / "kept.csv"], "-o/--output"),
        (["-o", kept, "--removed", tmp_path / "removed.csv"], "--removed"),
        (["-o", kept, *band, "--review", tmp_path / "review.json"], "--review"),
        (["-o", kept, "--unscored-output", tmp_path / "unscored.txt"], "--unscored-output"),
    ]:
        proc = curate("filter", scored_path, *args)
        assert_one_line_error(proc, 2, f"{option} ")
        assert "writes Parquet files" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == []  # nothing written, not even the kept file


# Run in a subprocess, so that no other test's imports count.
NO_TORCH_AFTER_HELP = """
import sys
from curate.cli import app
assert "torch" not in sys.modules, "importing curate.cli imported torch"
for args in (["--help"], ["score", "--help"], ["filter", "--help"]):
    try:
        app(args)
    except SystemExit as exc:
        assert exc.code == 0, (args, exc.code)
assert "torch" not in sys.modules, "curate --help imported torch"
"""

# torch blocked outright: `import torch` raises ImportError, as where it is not installed.
WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None
import curate.filtering, curate.schema, curate.io.parquet, curate.cli, curate.app.filter
from curate.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    sys.exit(exc.code)
"""


def test_help_imports_no_torch():
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH_AFTER_HELP], capture_output=True, text=True, env=CLI_ENV
    )
    assert proc.returncode == 0, proc.stderr
    assert "filter" in proc.stdout and "--review-band" in proc.stdout


def test_filter_runs_without_torch(scored, tmp_path):
    scored_path, _ = scored
    kept, removed = tmp_path / "kept.parquet", tmp_path / "removed.parquet"
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "filter", scored_path, "-o", kept]
        + ["--removed", removed],
        capture_output=True,
        text=True,
        env=CLI_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(scored_path).num_rows
    written = [pq.ParquetFile(p).metadata.num_rows for p in (kept, removed)]
    assert (
        sum(written) + pq.ParquetFile(tmp_path / "kept.unscored.parquet").metadata.num_rows == rows
    )
    # An argument error without torch: still one line, exit 2.
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "filter", tmp_path / "nope.parquet", "-o", kept],
        capture_output=True,
        text=True,
        env=CLI_ENV,
    )
    assert_one_line_error(proc, 2, "does not exist")


def test_label_and_default_filter_agree_at_one_half(tmp_path):
    from curate import schema
    from curate.filtering import DecisionRule

    probs = [0.25, 0.4999999, 0.5, 0.5000001, 0.75]
    labels = [schema.label_for(p) for p in probs]
    assert labels == ["Real", "Real", "Fake", "Fake", "Fake"]
    assert DecisionRule().decide(0.5) == "remove"
    columns = {
        "id": pa.array(range(len(probs))),
        schema.FAKE_PROB: pa.array(probs, schema.arrow_type(schema.FAKE_PROB)),
        schema.REAL_PROB: pa.array([1 - p for p in probs], schema.arrow_type(schema.REAL_PROB)),
        schema.LABEL: pa.array(labels, schema.arrow_type(schema.LABEL)),
        schema.ERROR: pa.array([None] * len(probs), schema.arrow_type(schema.ERROR)),
    }
    scored_path = tmp_path / "half.parquet"
    pq.write_table(pa.table(columns), scored_path)
    assert pq.read_table(scored_path).column(schema.FAKE_PROB)[2].as_py() == 0.5  # exact in f32
    kept, removed = tmp_path / "kept.parquet", tmp_path / "removed.parquet"
    proc = curate("filter", scored_path, "-o", kept, "--removed", removed)  # default threshold
    assert proc.returncode == 0, proc.stderr
    assert "threshold 0.5" in proc.stdout
    kept_rows = pq.read_table(kept).to_pydict()
    removed_rows = pq.read_table(removed).to_pydict()
    assert kept_rows["id"] == [0, 1] and set(kept_rows[schema.LABEL]) == {"Real"}
    assert removed_rows["id"] == [2, 3, 4] and set(removed_rows[schema.LABEL]) == {"Fake"}
    assert read_metadata(kept)["curate.threshold"] == "0.5"


def test_engine_ray_scores_provenance_like_a_local_run(tmp_path, folder, tiny_checkpoint):
    pytest.importorskip("ray")
    args = ["--model", tiny_checkpoint, "--dtype", "float32", "--device", "cpu"]
    args += ["--batch-size", "2", "--provenance", "--limit", "4"]
    local, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    assert curate("score", folder, "-o", local, *args).returncode == 0
    proc = curate("score", folder, "-o", ray_out, *args, "--engine", "ray", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Provenance evidence:" in proc.stdout
    a, b = pq.read_table(local), pq.read_table(ray_out)
    assert a.num_rows == 4 and a.column_names == b.column_names
    assert "provenance_synthetic" in b.column_names
    for name in ("image", "fake_prob", "deepfake_error", "provenance", "provenance_synthetic"):
        assert a.column(name).to_pylist() == b.column(name).to_pylist(), name


# -- in-process checks of the remaining error paths (fast; the same `app` the console runs) ---


@pytest.fixture
def run_cli(monkeypatch):
    from typer.testing import CliRunner

    from curate.cli import app

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    return run


def test_bad_arguments(run_cli, tmp_path, folder, scored, tiny_checkpoint):
    scored_path, _ = scored
    existing = tmp_path / "exists.parquet"
    existing.write_bytes(b"old")
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1]}), plain)
    m = ["--model", tiny_checkpoint]
    cases = [
        (["score", folder, *m], "is a folder source: pass -o"),
        (["score", folder, "-o", existing, *m], "already exists (pass --overwrite"),
        (["score", folder, "-o", tmp_path / "a.parquet", "--dtype", "int3", *m], "Unknown dtype"),
        (["score", folder, "-o", tmp_path / "a.parquet", "--device", "tpu9", *m], "device"),
        (["score", tmp_path / "empty-dir-missing", "-o", tmp_path / "a.parquet"], "not exist"),
        (["filter", tmp_path / "missing.parquet", "-o", tmp_path / "k.parquet"], "does not exist"),
        (["filter", plain, "-o", tmp_path / "k.parquet"], "has no 'fake_prob' column"),
        (["filter", existing, "-o", tmp_path / "k.parquet"], "cannot read"),
        (
            ["filter", scored_path, "-o", tmp_path / "k.parquet", "--threshold", "0.2"]
            + ["--review-band", "0.3", "0.7"],
            "inside the review band",
        ),
        (["filter", scored_path, "-o", existing], "already exists"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert existing.read_bytes() == b"old"
    assert not (tmp_path / "k.parquet").exists() and not (tmp_path / "a.parquet").exists()
    # typer's own usage errors: exit code 2 as well.
    assert (
        run_cli("score", folder, "-o", tmp_path / "a.parquet", "--batch-size", "0").exit_code == 2
    )
    assert (
        run_cli("filter", scored_path, "-o", tmp_path / "k.parquet", "--threshold", "1.5").exit_code
        == 2
    )
    assert (
        run_cli("filter", scored_path, "-o", tmp_path / "k.parquet", "--unscored", "x").exit_code
        == 2
    )


def test_overwrite_and_mismatched_resume(
    run_cli, tmp_path, folder, tiny_checkpoint, swapped_checkpoint
):
    out = tmp_path / "o.parquet"
    assert run_cli("score", folder, "-o", out, "--model", tiny_checkpoint).exit_code == 0
    before = pq.read_table(out)
    again = run_cli("score", folder, "-o", out, "--model", swapped_checkpoint, "--overwrite")
    assert again.exit_code == 0, again.output
    assert read_metadata(out)["curate.model"] == swapped_checkpoint
    assert pq.read_table(out).column("image").equals(before.column("image"))
    # An unfinished run with other arguments is never mixed into this one.
    work = Path(f"{out}.work")
    work.mkdir()
    (work / "manifest.json").write_text(json.dumps({"format": 1, "chunk_rows": 4, "rows": 3}))
    pq.write_table(before.slice(0, 4), work / "chunk-00000000.parquet")
    out.unlink()
    result = run_cli("score", folder, "-o", out, "--model", tiny_checkpoint)
    assert result.exit_code == 2 and "holds an unfinished run with different" in result.stderr
    assert (
        run_cli("score", folder, "-o", out, "--model", tiny_checkpoint, "--overwrite").exit_code
        == 0
    )
    assert pq.read_table(out).num_rows == 8 and not work.exists()


# -- the seed's Gradio demo, rebuilt on DeepfakeScorer -----------------------------------------


def _demo_module():
    spec = importlib.util.spec_from_file_location(
        "gradio_demo", REPO / "examples" / "gradio_demo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gradio_demo_scoring_function(photo_paths, tiny_checkpoint, broken_images):
    demo = _demo_module()
    scorer = DeepfakeScorer(model=tiny_checkpoint, batch_size=1)
    classify = demo.make_classifier(scorer)
    pixels = np.asarray(Image.open(photo_paths[1]).convert("RGB"))  # what gr.Image(numpy) gives
    got = classify(pixels)
    expected = scorer.score_images([Image.open(photo_paths[1])])
    assert got == {"Fake": expected["fake_prob"][0], "Real": expected["real_prob"][0]}
    assert abs(got["Fake"] + got["Real"] - 1) < 1e-6
    with pytest.raises(ValueError, match="cannot score this image"):
        classify(broken_images["truncated"])
    with pytest.raises(ValueError, match="no image"):
        classify(None)


def test_gradio_demo_builds_its_interface(tiny_checkpoint):
    gr = pytest.importorskip("gradio")
    interface = _demo_module().build_demo(DeepfakeScorer(model=tiny_checkpoint))
    assert isinstance(interface, gr.Interface)
