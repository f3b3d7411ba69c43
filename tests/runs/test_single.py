"""`ScoringRun`: one output file, resumed after a crash to the same output, other arguments
refused, one run per output at a time; a reason the source gave stands over the score."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate import DeepfakeScorer, schema
from curate.io.parquet import curate_metadata as read_metadata
from curate.runs import (
    ResumeMismatchError,
    RunInProgressError,
    ScoringRun,
    _WorkLock,
    with_scores,
    work_dir_for,
)
from curate.sources import resolve_source
from curate.sources.webdataset import REASON


def _png_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# The CLI's kill -9 test of a single-file run is in tests/cli/test_cli.py.


@pytest.fixture
def many_images(tmp_path, photo_paths, broken_images) -> Path:
    """19 small images in nested folders, including two unreadable files."""
    d = tmp_path / "many"
    (d / "sub").mkdir(parents=True)
    for i in range(17):
        img = Image.open(photo_paths[i % len(photo_paths)]).convert("RGB").resize((48 + i, 40))
        img.save(d / ("sub" if i % 3 else ".") / f"img{i:02d}.png")
    shutil.copy(broken_images["truncated"], d / "sub" / "broken.jpg")
    shutil.copy(broken_images["not_an_image"], d / "notes.jpg")
    return d


class _Crash(Exception):
    pass


def _read(path) -> dict:
    return pq.read_table(path).to_pydict()


def test_scoring_run_resumes_after_a_crash(tmp_path, many_images, tiny_checkpoint):
    source = resolve_source(many_images)
    assert source.num_rows == 19
    scorer = DeepfakeScorer(model=tiny_checkpoint, batch_size=2)
    reference = tmp_path / "reference.parquet"
    assert ScoringRun(source, scorer, reference, chunk_rows=4).run() == 19
    assert not Path(work_dir_for(reference)).exists()

    out = tmp_path / "out.parquet"
    calls = []

    def crash_after_four_batches(n):
        calls.append(n)
        if len(calls) == 5:
            raise _Crash

    with pytest.raises(_Crash):
        ScoringRun(source, scorer, out, chunk_rows=4).run(progress=crash_after_four_batches)
    assert not out.exists()
    work = Path(work_dir_for(out))
    assert sorted(p.name for p in work.iterdir()) == [
        "chunk-00000000.parquet",
        "chunk-00000001.parquet",
        "manifest.json",
    ]

    scored = []
    counting = DeepfakeScorer(model=tiny_checkpoint, batch_size=2)
    original = counting.score_images
    counting.score_images = lambda images: scored.append(len(images)) or original(images)
    run = ScoringRun(source, counting, out, chunk_rows=100)  # the old chunk size is kept
    assert run.resumed_rows == 8 and run.chunk_rows == 4
    assert run.run() == 19
    assert sum(scored) == 11  # only what was missing was scored again
    assert _read(out) == _read(reference)
    assert not work.exists()
    rows = _read(out)
    assert rows["image"][0]["path"] == "img00.png"  # sorted by relative path, relative paths
    errors = {r["path"]: e for r, e in zip(rows["image"], rows["deepfake_error"], strict=True) if e}
    assert set(errors) == {"notes.jpg", "sub/broken.jpg"}
    assert "not a recognised image" in errors["notes.jpg"]


def test_scoring_run_with_other_arguments_does_not_mix_results(
    tmp_path, many_images, tiny_checkpoint, swapped_checkpoint
):
    out = tmp_path / "out.parquet"
    source = resolve_source(many_images)
    scorer = DeepfakeScorer(model=tiny_checkpoint, batch_size=2)

    def crash(n, calls=[]):  # noqa: B006 - counts calls across this test only
        calls.append(n)
        if len(calls) == 3:
            raise _Crash

    with pytest.raises(_Crash):
        ScoringRun(source, scorer, out, chunk_rows=2).run(progress=crash)
    other_model = DeepfakeScorer(model=swapped_checkpoint, batch_size=2)
    with pytest.raises(ResumeMismatchError, match="different model"):
        ScoringRun(source, other_model, out)
    with pytest.raises(ResumeMismatchError, match="different row count"):
        ScoringRun(resolve_source(many_images, limit=5), scorer, out)
    (many_images / "new.png").write_bytes(_png_bytes(Image.new("RGB", (8, 8))))
    with pytest.raises(ResumeMismatchError, match="different source"):
        ScoringRun(resolve_source(many_images), scorer, out)
    fresh = ScoringRun(resolve_source(many_images), other_model, out, overwrite=True)
    assert fresh.resumed_rows == 0
    assert fresh.run() == 20
    assert read_metadata(out)["curate.model"] == swapped_checkpoint


def test_scoring_run_refuses_an_existing_output(tmp_path, many_images, tiny_checkpoint):
    out = tmp_path / "out.parquet"
    out.write_bytes(b"keep me")
    scorer = DeepfakeScorer(model=tiny_checkpoint)
    with pytest.raises(FileExistsError, match="--overwrite"):
        ScoringRun(resolve_source(many_images), scorer, out)
    assert out.read_bytes() == b"keep me"
    assert not Path(work_dir_for(out)).exists()


def test_two_runs_never_share_a_working_folder(tmp_path, many_images, tiny_checkpoint):
    out = tmp_path / "out.parquet"
    held = _WorkLock(work_dir_for(out) + ".lock", str(out))  # another process's run, in effect
    scorer = DeepfakeScorer(model=tiny_checkpoint)
    with pytest.raises(RunInProgressError, match="another `curate score` is writing"):
        ScoringRun(resolve_source(many_images), scorer, out).run()
    assert not out.exists()
    held.release()
    assert ScoringRun(resolve_source(many_images), scorer, out).run() == 19
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many", "out.parquet"]


def test_a_reason_the_source_gave_stands_over_the_score():
    batch = {"image": [b"x", b"y"], REASON: [None, "sample k has no image member"]}
    scores = {
        schema.FAKE_PROB: schema.TypedColumn(schema.FAKE_PROB, [0.2, 0.9]),
        schema.REAL_PROB: schema.TypedColumn(schema.REAL_PROB, [0.8, 0.1]),
        schema.LABEL: schema.TypedColumn(schema.LABEL, ["Real", "Fake"]),
        schema.ERROR: schema.TypedColumn(schema.ERROR, [None, None]),
    }
    rows = with_scores(batch, scores)
    assert rows[schema.FAKE_PROB] == [0.2, None] and rows[schema.LABEL] == ["Real", None]
    assert rows[schema.ERROR] == [None, "sample k has no image member"]
    assert REASON not in rows
    assert isinstance(rows[schema.FAKE_PROB], schema.TypedColumn)
