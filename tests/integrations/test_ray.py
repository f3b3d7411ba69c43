"""Ray Data on a local cluster (2 CPUs, one per module): the scorer as a map_batches actor
stage over each Ray reader's image form, written back in the project's Parquet schema, with
the single-process scorer's numbers; and `curate score --engine ray` (`score_files`), which
reads through `curate.sources` and writes the very file a local run writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset, Image, load_dataset
from PIL import Image as PILImage

from curate import DeepfakeScorer

ray = pytest.importorskip("ray")

from curate.integrations.ray import (  # noqa: E402
    RayDeepfakeScorer,
    read_source,
    score_files,
    score_ray_dataset,
    write_scored_parquet,
)
from curate.runs import ScoringRun  # noqa: E402
from curate.sources import resolve_source  # noqa: E402

# Schema-metadata keys a Ray run may write differently from a local one, and why.
RAY_ONLY_METADATA = {b"curate.engine"}  # "ray": which engine wrote the file


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photo_paths, broken_images) -> str:
    """The example photos and one broken file of each on-disk kind."""
    d = tmp_path_factory.mktemp("rayimages")
    for p in photo_paths:
        shutil.copy(p, d)
    for kind in ("truncated", "zero_bytes", "not_an_image"):
        shutil.copy(broken_images[kind], d / f"broken_{kind}.jpg")
    return str(d)


def _local(checkpoint: str, files: list[str]) -> dict[str, tuple]:
    """{file name: (fake_prob, label, has_error)} from the plain single-process scorer."""
    items = []
    for f in files:
        with open(f, "rb") as fh:
            items.append({"bytes": fh.read(), "path": f})
    out = DeepfakeScorer(checkpoint, device="cpu").score_images(items)
    return {
        os.path.basename(f): (p, label, err is not None)
        for f, p, label, err in zip(
            files, out["fake_prob"], out["deepfake_label"], out["deepfake_error"], strict=True
        )
    }


def _by_name(table: pa.Table, path_of) -> dict[str, tuple]:
    rows = table.to_pylist()
    return {
        os.path.basename(path_of(r)): (
            r["fake_prob"],
            r["deepfake_label"],
            r["deepfake_error"] is not None,
        )
        for r in rows
    }


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, (p, label, err) in want.items():
        gp, glabel, gerr = got[name]
        assert (glabel, gerr) == (label, err), name
        assert (gp is None) == (p is None), name
        if p is not None:
            assert gp == pytest.approx(p, abs=1e-6), name


def test_binary_files_with_broken_files_to_parquet(cluster, folder, tiny_checkpoint, tmp_path):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
    ds = ray.data.read_binary_files(files, include_paths=True)
    scored = score_ray_dataset(
        ds, DeepfakeScorer(tiny_checkpoint, device="cpu", image_column="bytes", batch_size=2),
        concurrency=1, batch_size=4,
    )  # fmt: skip
    out = tmp_path / "scored"
    rows = write_scored_parquet(
        scored, out, image_column="bytes", metadata={"curate.model": tiny_checkpoint}
    )
    assert rows == len(files)
    table = pq.read_table(out)
    assert table.schema.field("image").type == pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())]
    )
    assert table.schema.field("fake_prob").type == pa.float32()
    assert table.schema.field("deepfake_error").type == pa.string()
    assert "bytes" not in table.column_names and "path" not in table.column_names
    _assert_same(_by_name(table, lambda r: r["image"]["path"]), _local(tiny_checkpoint, files))
    errors = [r["deepfake_error"] for r in table.to_pylist() if r["deepfake_error"]]
    assert len(errors) == 3 and all("broken_" in e or "empty" in e for e in errors), errors
    # The project's schema: datasets reads the folder back with an Image feature and the bytes.
    back = load_dataset("parquet", data_dir=str(out), split="train")
    assert back.features["image"] == Image()
    good = back["deepfake_error"].index(None)
    assert back[good]["image"].size[0] > 0
    with pytest.raises(FileExistsError):
        write_scored_parquet(scored, out, image_column="bytes")


def test_read_images_numpy(cluster, photo_paths, tiny_checkpoint, tmp_path):
    ds = ray.data.read_images(photo_paths, include_paths=True)
    scored = score_ray_dataset(ds, model=tiny_checkpoint, device="cpu", concurrency=1)
    table = pa.concat_tables(ray.get(scored.to_arrow_refs()))
    assert "image" in table.column_names  # the whole batch came back, not only the scores
    _assert_same(_by_name(table, lambda r: r["path"]), _local(tiny_checkpoint, photo_paths))
    # Written in the project's schema: decoded arrays stored losslessly (PNG), path kept.
    write_scored_parquet(scored, tmp_path / "out")
    back = load_dataset("parquet", data_dir=str(tmp_path / "out"), split="train")
    assert back.features["image"] == Image()
    for row in back:
        want = np.asarray(PILImage.open(row["path"]).convert("RGB"))
        got = np.asarray(row["image"].convert("RGB"))
        np.testing.assert_array_equal(got, want)


def test_read_parquet_hf_structs(cluster, photo_paths, tiny_checkpoint, tmp_path):
    hf = Dataset.from_dict({"image": photo_paths, "idx": list(range(len(photo_paths)))})
    hf.cast_column("image", Image()).to_parquet(str(tmp_path / "hf.parquet"))
    ds = ray.data.read_parquet(str(tmp_path / "hf.parquet"))
    scored = score_ray_dataset(ds, model=tiny_checkpoint, device="cpu", concurrency=1)
    table = pa.concat_tables(ray.get(scored.to_arrow_refs())).sort_by("idx")
    assert table.column("idx").to_pylist() == list(range(len(photo_paths)))
    _assert_same(
        _by_name(table, lambda r: r["image"]["path"]), _local(tiny_checkpoint, photo_paths)
    )


def test_score_files_one_parquet_in_source_order(cluster, folder, tiny_checkpoint, tmp_path):
    """What `curate score --engine ray` runs: one file, folder order, relative paths."""
    out = tmp_path / "scored.parquet"
    rows = score_files(folder, out, model=tiny_checkpoint, device="cpu", batch_size=2)
    names = sorted(os.listdir(folder))
    assert rows == len(names)
    table = pq.read_table(out)
    assert [r["path"] for r in table.column("image").to_pylist()] == names
    files = [os.path.join(folder, n) for n in names]
    _assert_same(_by_name(table, lambda r: r["image"]["path"]), _local(tiny_checkpoint, files))
    meta = table.schema.metadata
    assert meta[b"curate.engine"] == b"ray" and b"huggingface" in meta
    with pytest.raises(FileExistsError):
        score_files(folder, out, model=tiny_checkpoint)


@pytest.fixture
def awkward_folder(tmp_path, photo_paths, broken_images) -> str:
    """Photos, broken files, a FIFO named like an image and a name that is not UTF-8: what
    Ray's own readers hang on or crash at, and a local run turns into rows."""
    d = tmp_path / "awkward"
    (d / "nested").mkdir(parents=True)
    for p in photo_paths[:3]:
        shutil.copy(p, d)
    shutil.copy(photo_paths[3], os.fsencode(d) + b"/caf\xe9.jpg")
    shutil.copy(photo_paths[4], d / "nested" / "deep.png")
    shutil.copy(broken_images["truncated"], d / "nested" / "truncated.jpg")
    shutil.copy(broken_images["not_an_image"], d / "notes.png")
    os.mkfifo(d / "pipe.jpg")
    return str(d)


@pytest.mark.timeout(300)
def test_ray_reads_the_rows_a_local_run_reads(cluster, awkward_folder):
    ds, src = read_source(awkward_folder, rows_per_read=3)
    assert src.kind == "folder"
    ds.context.execution_options.preserve_order = True
    got = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow"))).to_pylist()
    local = resolve_source(awkward_folder)
    want = local.read(0, local.num_rows)["image"]
    assert [r["image"] for r in got] == want
    assert [r["path"] for r in want][:2] == ["astronaut.jpg", "caf\\xe9.jpg"]
    assert {"bytes": None, "path": os.path.join(awkward_folder, "pipe.jpg")} in want


@pytest.mark.timeout(600)
def test_ray_output_is_the_local_output(cluster, awkward_folder, tiny_checkpoint, tmp_path):
    """Same rows, order, columns, types, datasets features and curate metadata (provenance
    columns included) as `ScoringRun` over `resolve_source`: only the keys in
    RAY_ONLY_METADATA differ."""
    settings = dict(model=tiny_checkpoint, device="cpu", dtype="float32", batch_size=2)
    local_out, ray_out = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    scorer = DeepfakeScorer(**settings, provenance=True)
    ScoringRun(resolve_source(awkward_folder), scorer, local_out).run()
    rows = score_files(awkward_folder, ray_out, provenance=True, **settings)

    local, ray_table = pq.read_table(local_out), pq.read_table(ray_out)
    assert rows == local.num_rows == 8
    assert ray_table.schema.equals(local.schema, check_metadata=False)
    meta_local, meta_ray = dict(local.schema.metadata), dict(ray_table.schema.metadata)
    assert set(meta_ray) - set(meta_local) == RAY_ONLY_METADATA
    assert meta_ray[b"curate.engine"] == b"ray"
    for key in RAY_ONLY_METADATA:
        meta_ray.pop(key)
    assert meta_ray == meta_local
    assert b"curate.source" in meta_local and b"huggingface" in meta_local
    assert "provenance" in ray_table.column_names
    floats = [f.name for f in local.schema if pa.types.is_floating(f.type)]
    rest = [c for c in local.column_names if c not in floats]
    assert ray_table.select(rest).equals(local.select(rest))
    for name in floats:  # the same model on the same rows; batches may group them differently
        a = np.array(ray_table.column(name).to_pylist(), dtype=float)
        b = np.array(local.column(name).to_pylist(), dtype=float)
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=name)
    errors = dict(zip(local.column("image").combine_chunks().field("path").to_pylist(),
                      local.column("deepfake_error").to_pylist(), strict=True))  # fmt: skip
    assert "named pipe (FIFO)" in errors[os.path.join(awkward_folder, "pipe.jpg")]
    assert errors["caf\\xe9.jpg"] is None
    # datasets reads the Ray file back with its Image feature, like the local one.
    back = load_dataset("parquet", data_files=str(ray_out), split="train")
    assert back.features["image"] == Image()


def test_stage_returns_the_whole_batch(tiny_checkpoint, photo_paths):
    """The actor class alone (no cluster): numpy batches in, an Arrow table with every source
    column and the typed score columns out; a missing image column is a clear error."""
    stage = RayDeepfakeScorer(tiny_checkpoint, device="cpu", image_column="bytes")
    data = []
    for p in photo_paths[:2]:
        with open(p, "rb") as f:
            data.append(f.read())
    data.append(b"garbage")
    batch = {"bytes": np.array(data, dtype=object), "path": np.array(["a.jpg", "b.png", "c.jpg"])}
    table = stage(batch)
    assert table.column_names[:2] == ["bytes", "path"]
    assert table.schema.field("fake_prob").type == pa.float32()
    assert table.column("fake_prob").null_count == 1
    assert "'c.jpg'" in table.column("deepfake_error")[2].as_py()
    with pytest.raises(KeyError, match="read_binary_files calls it 'bytes'"):
        RayDeepfakeScorer(tiny_checkpoint, device="cpu")(batch)


def test_cli_engine_ray(folder, tiny_checkpoint, tmp_path):
    """The real CLI in a subprocess (its own local Ray cluster) gives the library's rows."""
    out = tmp_path / "cli.parquet"
    cmd = [sys.executable, "-m", "curate.cli", "score", folder, "-o", str(out)]
    cmd += ["--model", tiny_checkpoint, "--device", "cpu", "--batch-size", "2", "--engine", "ray"]
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pq.read_table(out)
    files = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
    _assert_same(_by_name(table, lambda r: r["image"]["path"]), _local(tiny_checkpoint, files))
    assert pq.read_schema(out).metadata[b"curate.engine"] == b"ray"
    bad = subprocess.run(
        [
            *cmd[:5],
            "-o",
            str(tmp_path / "x.parquet"),
            "--num-gpus",
            "2",
            "--model",
            tiny_checkpoint,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if not torch.cuda.is_available():
        assert bad.returncode == 2
        assert "--num-gpus 2 but this machine has 0 CUDA GPU(s)" in bad.stderr
        assert "Traceback" not in bad.stderr
