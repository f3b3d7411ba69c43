"""`curate adapt` in a subprocess: a head fitted on the detector's embeddings lifts held-out
AUC where the detector is at chance, and the head it writes scores through `curate score`
and `curate eval`; an interrupted run resumes from its working folder.

The labelled images are crops of the example photos at the tiny model's input size (64x64, so
no resize blurs them); the Fake ones carry a faint checkerboard (+-6 of 255), a period-2
pattern like the upsampling artefacts of generators. The random detector's own score cannot
tell them apart; its embedding can.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_curate
from PIL import Image
from sklearn.metrics import roc_auc_score

from curate import DeepfakeScorer
from curate.app.adapt import AdaptInterrupted, AdaptRequest, adapt
from curate.app.progress import Progress
from curate.detectors.head import LinearHead

F32 = ("--device", "cpu", "--dtype", "float32")
SIZE = 64
AMPLITUDE = 6.0


def _labelled_folder(root, photo_paths, per_class: int, seed: int) -> str:
    """`root/fake/*.png` and `root/real/*.png`: random crops, the Fake ones patterned."""
    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in photo_paths]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    checkerboard = np.where((xx + yy) % 2 == 0, 1.0, -1.0)[..., None]
    for cls in ("fake", "real"):
        os.makedirs(root / cls)
        for i in range(per_class):
            photo = photos[rng.integers(len(photos))]
            h, w = photo.shape[:2]
            side = int(min(h, w) * rng.uniform(0.15, 0.6))
            y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = Image.fromarray(photo[y0 : y0 + side, x0 : x0 + side])
            pixels = np.asarray(crop.resize((SIZE, SIZE), Image.Resampling.BILINEAR), float)
            if rng.random() < 0.5:
                pixels = pixels[:, ::-1]
            if cls == "fake":
                pixels = pixels + AMPLITUDE * checkerboard
            out = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
            Image.fromarray(out).save(root / cls / f"{i:04d}.png")
    return str(root)


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory, photo_paths) -> str:
    return _labelled_folder(tmp_path_factory.mktemp("adapt") / "train", photo_paths, 120, 0)


@pytest.fixture(scope="module")
def fresh_folder(tmp_path_factory, photo_paths) -> str:
    """Images no run of `curate adapt` sees: for measuring the head independently."""
    return _labelled_folder(tmp_path_factory.mktemp("adapt") / "fresh", photo_paths, 60, 1)


@pytest.fixture(scope="module")
def adapted(train_folder, tiny_checkpoint, tmp_path_factory):
    head = tmp_path_factory.mktemp("heads") / "head"
    result = run_curate("adapt", train_folder, "-o", head, "--model", tiny_checkpoint, *F32)
    assert result.returncode == 0, result.stderr
    return result, str(head)


def _files(folder: str) -> tuple[list[str], np.ndarray]:
    fake = sorted(os.path.join(folder, "fake", n) for n in os.listdir(os.path.join(folder, "fake")))
    real = sorted(os.path.join(folder, "real", n) for n in os.listdir(os.path.join(folder, "real")))
    return fake + real, np.r_[np.ones(len(fake)), np.zeros(len(real))]


def test_adapt_lifts_held_out_auc_where_the_detector_is_at_chance(
    adapted, fresh_folder, tiny_checkpoint
):
    result, head = adapted
    assert "detector" in result.stdout and "adapted head" in result.stdout
    assert "Held out: 30 Fake + 30 Real images from a stratified 25%" in result.stdout
    assert f"--head {head}" in result.stdout
    assert sorted(os.listdir(head)) == ["head.json", "head.safetensors"]
    assert not os.path.exists(head + ".work")  # the working folder goes once the head is whole
    with open(os.path.join(head, "head.json"), encoding="utf-8") as f:
        config = json.load(f)
    printed = config["heldout"]
    assert 0.3 < printed["detector"]["roc_auc"] < 0.7
    assert printed["head"]["roc_auc"] > 0.8
    assert f"{printed['head']['roc_auc']:.4f}" in result.stdout
    assert config["train"]["fake"] == config["train"]["real"] == 90

    # Measured here, on images the run never saw, with the scorer every front end uses.
    files, y = _files(fresh_folder)
    base = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32").score_images(files)
    tuned = DeepfakeScorer(tiny_checkpoint, head=head, device="cpu", dtype="float32")
    tuned = tuned.score_images(files)
    base_auc = roc_auc_score(y, base["fake_prob"])
    head_auc = roc_auc_score(y, tuned["fake_prob"])
    assert 0.3 < base_auc < 0.7, base_auc
    assert head_auc > 0.8 and head_auc - base_auc > 0.25, (base_auc, head_auc)


def test_the_head_scores_through_curate_score_and_eval(
    adapted, fresh_folder, tiny_checkpoint, tmp_path
):
    _, head = adapted
    out = tmp_path / "scored.parquet"
    result = run_curate("score", fresh_folder, "-o", out, "--model", tiny_checkpoint,
                        "--head", head, *F32)  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out)
    assert table.schema.metadata[b"curate.head"] == os.path.abspath(head).encode()
    files, y = _files(fresh_folder)
    direct = DeepfakeScorer(tiny_checkpoint, head=head, device="cpu", dtype="float32")
    want = dict(zip(files, direct.score_images(files)["fake_prob"], strict=True))
    rows = table.select(["image", "fake_prob"]).to_pylist()
    for row in rows:
        path = os.path.join(fresh_folder, row["image"]["path"])
        assert row["fake_prob"] == pytest.approx(want[path], abs=1e-6)

    report = tmp_path / "report"
    result = run_curate("eval", fresh_folder, "--out-dir", report, "--model", tiny_checkpoint,
                        "--head", head, "--bootstrap", "0", *F32)  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((report / "report.json").read_text())["metrics"]
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, list(want.values())), abs=1e-6)


class _StopAfter(Progress):
    """Interrupts the run (as Ctrl-C would) once `rows` rows are done."""

    def __init__(self, rows: int) -> None:
        self.left = rows

    def advance(self, rows: int) -> None:
        self.left -= rows
        if self.left <= 0:
            raise KeyboardInterrupt


def test_an_interrupted_adapt_resumes_and_fits_the_same_head(
    tiny_checkpoint, tmp_path, photo_paths, fresh_folder
):
    data = _labelled_folder(tmp_path / "small", photo_paths, 40, 2)
    head = tmp_path / "head"
    args = dict(model=tiny_checkpoint, device="cpu", dtype="float32", batch_size=8)
    request = AdaptRequest(data, head, eval_source=fresh_folder, chunk_rows=16, **args)
    with pytest.raises(AdaptInterrupted) as stopped:
        adapt(request, _StopAfter(40))
    work = stopped.value.work_dir
    assert work == f"{head}.work" and not head.exists()
    kept = sorted(os.listdir(os.path.join(work, "train")))
    assert kept[0] == "chunk-00000000.npz" and "manifest.json" in kept

    result = run_curate("adapt", data, "-o", head, "--model", tiny_checkpoint, "--eval",
                        fresh_folder, "--chunk-rows", "16", "--batch-size", "8", *F32)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Resuming: 32 rows already extracted" in result.stderr
    assert f"{fresh_folder} (--eval)" in result.stdout.replace("\n", "")
    assert not os.path.exists(work)

    again = AdaptRequest(data, tmp_path / "uninterrupted", eval_source=fresh_folder, **args)
    clean = adapt(again)
    resumed, fresh = LinearHead.load(head), LinearHead.load(clean.output)
    np.testing.assert_allclose(resumed.weight, fresh.weight, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(resumed.bias, fresh.bias, rtol=1e-6, atol=1e-6)


def test_bad_requests_are_one_line_errors(adapted, train_folder, tiny_checkpoint, tmp_path):
    _, head = adapted
    exists = run_curate("adapt", train_folder, "-o", head, "--model", tiny_checkpoint, *F32)
    assert exists.returncode == 2 and "already exists (pass --overwrite" in exists.stderr

    odd = tmp_path / "odd"
    (odd / "cats").mkdir(parents=True)
    Image.new("RGB", (SIZE, SIZE)).save(odd / "cats" / "a.png")
    labels = run_curate("adapt", odd, "-o", tmp_path / "h", "--model", tiny_checkpoint, *F32)
    assert labels.returncode == 2 and "neither Fake nor Real" in labels.stderr

    other = tmp_path / "other"
    other.mkdir()
    bad_head = run_curate("score", train_folder, "-o", tmp_path / "x.parquet", "--model",
                          tiny_checkpoint, "--head", other, *F32)  # fmt: skip
    assert bad_head.returncode == 2 and "is not an adapted head" in bad_head.stderr
    assert len(exists.stderr.strip().splitlines()) == 1, exists.stderr  # before any work
    for result in (exists, labels, bad_head):
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("Error: "), result.stderr
