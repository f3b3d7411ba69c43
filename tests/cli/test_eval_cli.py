"""`curate eval` and `curate report` as a user runs them: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import CLI_ENV, SPREAD
from conftest import run_curate as curate
from PIL import Image, ImageOps

from curate.calibration import Calibration
from curate.io.parquet import curate_metadata as read_metadata
from curate.io.parquet import write_parquet
from curate.testing import build_random_checkpoint

EVAL_FILES = {
    "report.md",
    "report.json",
    "scores.parquet",
    "hist.png",
    "roc.png",
    "pr.png",
    "reliability.png",
}


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, photo_paths) -> Path:
    """real/ holds the example photos, fake/gen_a and fake/gen_b altered copies of them."""
    root = tmp_path_factory.mktemp("labelled")
    for sub in ("real", "fake/gen_a", "fake/gen_b"):
        (root / sub).mkdir(parents=True)
    for i, p in enumerate(photo_paths):
        img = Image.open(p).convert("RGB")
        img.save(root / "real" / f"{i}.png")
        ImageOps.mirror(img).save(root / "fake" / "gen_a" / f"{i}.png")
        ImageOps.posterize(img, 3).save(root / "fake" / "gen_b" / f"{i}.jpg", quality=90)
    (root / "real" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def evaluated(labelled, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "report"
    proc = curate(
        "eval", labelled, "--model", tiny_checkpoint, "--out-dir", out,
        "--target-precision", "0.6", "--review-budget", "3", "--fit-calibration", "temperature",
        "--calibration-holdout", "0", "--robustness", "--perturb", "jpeg:40",
        "--perturb", "downscale:0.5", "--bootstrap", "50", "--batch-size", "4",
    )  # fmt: skip
    return proc, out


def test_eval_prints_card_table_and_writes_every_file(evaluated, labelled):
    proc, out = evaluated
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "precision    recall  f1-score   support" in text
    for row in ("Fake", "Real", "accuracy", "macro avg", "weighted avg"):
        assert f"\n{row:>12} " in text or f"\n{row}" in text, row
    for figure in ("ROC-AUC", "AP", "TPR@1%FPR", "ECE", "held-out ECE"):
        assert figure in text
    assert "Filter with: curate filter" in text
    n_images = sum(1 for _ in labelled.rglob("*.*")) - 1  # the broken file is not scored
    assert f"{n_images} labelled images" in text and "1 unscored" in text
    files = {p.name for p in out.iterdir()}
    assert files == EVAL_FILES | {"calibration.json", "robustness.png"}
    for png in ("hist.png", "roc.png", "pr.png", "reliability.png", "robustness.png"):
        with Image.open(out / png) as im:
            im.load()
            assert im.format == "PNG"
            assert 400 <= im.width <= 3000 and 300 <= im.height <= 3000, (png, im.size)
            assert np.asarray(im.convert("L")).std() > 5  # not a blank canvas
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["labelled"] == n_images and report["counts"]["unscored"] == 1
    assert report["chosen"]["criterion"] == "precision"
    assert [r["perturbation"] for r in report["robustness"]] == [
        "original",
        "jpeg:40",
        "downscale:0.5",
    ]
    assert {g["group"] for g in report["groups"]} == {"fake/gen_a", "fake/gen_b", "real"}
    md = (out / "report.md").read_text()
    assert "weighted avg" in md and "## Robustness" in md and "## Review band" in md
    scores = pq.read_table(out / "scores.parquet").to_pydict()
    assert len(scores["fake_prob"]) == n_images and set(scores["label"]) == {"Fake", "Real"}


def test_threshold_and_calibration_feed_score_filter_and_report(
    evaluated, labelled, tiny_checkpoint, tmp_path
):
    _, out = evaluated
    report = json.loads((out / "report.json").read_text())
    cal = Calibration.load(out / "calibration.json")
    assert cal.model == tiny_checkpoint and cal.method == "temperature"
    scored = tmp_path / "scored.parquet"
    proc = curate(
        "score", labelled, "--model", tiny_checkpoint, "-o", scored,
        "--calibration", out / "calibration.json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = read_metadata(scored)
    assert json.loads(meta["curate.calibration"])["slope"] == pytest.approx(cal.slope)

    band = report["review"]
    proc = curate(
        "filter", scored, "-o", tmp_path / "kept.parquet",
        "--threshold", repr(report["chosen"]["threshold"]),
        "--review-band", repr(band["low"]), repr(band["high"]), "--removed", tmp_path / "rm.parquet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    kept = pq.read_metadata(tmp_path / "kept.parquet").num_rows
    removed = pq.read_metadata(tmp_path / "rm.parquet").num_rows
    review = pq.read_metadata(tmp_path / "kept.review.parquet").num_rows
    # The eval's expected counts are the decision's actual counts on the same images.
    assert (kept, removed, review) == (
        round(band["expected"]["kept"]),
        round(band["expected"]["removed"]),
        round(band["expected"]["review"]),
    )

    rep_dir = tmp_path / "rep"
    proc = curate("report", scored, "--out-dir", rep_dir, "--from-eval", out / "report.json")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in rep_dir.iterdir()} == {"report.md", "report.json", "hist.png"}
    rep = json.loads((rep_dir / "report.json").read_text())
    assert (rep["rule"]["keep"], rep["rule"]["remove"], rep["rule"]["review"]) == (
        kept,
        removed,
        review,
    )
    assert rep["unscored"] == 1 and rep["rule"]["unscored"] == 1
    assert rep["calibration"]["slope"] == pytest.approx(cal.slope)
    with Image.open(rep_dir / "hist.png") as im:
        assert im.format == "PNG" and im.width >= 400


def test_eval_of_a_scored_parquet_with_numeric_labels(tiny_checkpoint, labelled, tmp_path):
    from curate.scorer import DeepfakeScorer
    from curate.sources import resolve_source

    src = resolve_source(labelled)
    batch = next(src.batches(100))
    scorer = DeepfakeScorer(tiny_checkpoint, with_logits=True)
    batch.update(scorer.score_images(batch["image"]))
    batch["is_fake"] = [int(im["path"].startswith("fake/")) for im in batch["image"]]
    path = tmp_path / "scored.parquet"
    write_parquet([batch], path, metadata=scorer.metadata())

    proc = curate("eval", path, "--label-column", "is_fake", "--out-dir", tmp_path / "a")
    assert proc.returncode == 2
    assert "--label-map" in one_line_error(proc)

    out = tmp_path / "b"
    proc = curate(
        "eval", path, "--label-column", "is_fake", "--label-map", "1=Fake,0=Real",
        "--out-dir", out, "--bootstrap", "20", "--max-fpr", "0.2",
        "--robustness", "--perturb", "jpeg:50", "--probe-limit", "4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["fake"] == sum(batch["is_fake"])
    assert report["model"] == tiny_checkpoint  # from the file's metadata
    assert report["chosen"]["criterion"] == "max_fpr" and report["chosen"]["fpr"] <= 0.2
    # Scores come from the file; the probe re-scores with the model that made them.
    stored = pq.read_table(out / "scores.parquet").column("fake_prob").to_pylist()
    ok = [p for p in batch["fake_prob"] if p is not None]
    np.testing.assert_allclose(sorted(stored), sorted(ok), rtol=1e-6)
    original = report["robustness"][0]
    assert original["perturbation"] == "original" and original["n"] == 4


def test_single_class_sample_reports_instead_of_nan(tiny_checkpoint, labelled, tmp_path):
    proc = curate(
        "eval", labelled / "fake", "--model", tiny_checkpoint, "--out-dir", tmp_path / "o",
        "--label-map", "gen_a=Fake,gen_b=Fake", "--bootstrap", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "only Fake images" in proc.stdout
    assert "ROC-AUC n/a" in proc.stdout
    text = (tmp_path / "o" / "report.json").read_text()
    assert "NaN" not in text and json.loads(text)["metrics"]["roc_auc"] is None
    assert not (tmp_path / "o" / "roc.png").exists()  # a ROC curve needs both classes
    assert (tmp_path / "o" / "hist.png").exists()


def test_eval_and_report_errors_are_one_line(evaluated, labelled, tiny_checkpoint, tmp_path):
    _, out = evaluated
    proc = curate("eval", labelled, "--model", tiny_checkpoint, "--out-dir", out)
    assert proc.returncode == 2 and "--overwrite" in one_line_error(proc)
    proc = curate(
        "eval", labelled, "--model", tiny_checkpoint, "--out-dir", tmp_path / "x",
        "--robustness", "--perturb", "blur:2",
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown perturbation" in one_line_error(proc)
    proc = curate(
        "eval", labelled, "--model", tiny_checkpoint, "--out-dir", tmp_path / "y",
        "--label-map", "real=Real",
    )  # fmt: skip
    assert proc.returncode == 2 and "neither Fake nor Real" in one_line_error(proc)
    plain = tmp_path / "plain.parquet"
    write_parquet([{"a": [1, 2]}], plain, image_column=None)
    proc = curate("report", plain, "--out-dir", tmp_path / "w")
    assert proc.returncode == 2 and "no 'fake_prob' column" in one_line_error(proc)
    scored = tmp_path / "scores-only.parquet"
    write_parquet([{"fake_prob": [0.1, 0.7, 0.95, None]}], scored, image_column=None)
    proc = curate(
        "report", scored, "--out-dir", tmp_path / "v", "--threshold", "0.5",
        "--from-eval", out / "report.json",
    )  # fmt: skip
    assert proc.returncode == 2 and "not both" in one_line_error(proc)
    proc = curate("report", scored, "--out-dir", tmp_path / "v", "--thresholds", "0.5,2")
    assert proc.returncode == 2 and "[0, 1]" in one_line_error(proc)
    proc = curate("eval", labelled, "--out-dir", tmp_path / "u", "--label-map", "ai")
    assert proc.returncode == 2 and "--label-map" in one_line_error(proc)


def test_report_counts_a_review_band_alone(tmp_path):
    """A band decides by its edges: no threshold needs to be given with it."""
    scored = tmp_path / "scores-only.parquet"
    write_parquet([{"fake_prob": [0.1, 0.7, 0.95, None]}], scored, image_column=None)
    proc = curate("report", scored, "--out-dir", tmp_path / "r", "--review-band", "0.6", "0.9")
    assert proc.returncode == 0, proc.stderr
    rule = json.loads((tmp_path / "r" / "report.json").read_text())["rule"]
    assert rule["review_band"] == [0.6, 0.9]
    counts = [rule[k] for k in ("keep", "review", "remove", "unscored")]
    assert counts == [1, 1, 1, 1]


def test_rescore_records_the_model_it_scored_with(tiny_checkpoint, labelled, tmp_path):
    """`--rescore` on a file scored by another model: the report, calibration.json and the
    robustness probe use the model that scored again (here the default, $CURATE_MODEL), not
    the one the file's metadata names."""
    from curate.scorer import DeepfakeScorer
    from curate.sources import resolve_source

    other = build_random_checkpoint(tmp_path / "other", classifier_scale=SPREAD, seed=1)
    src = resolve_source(labelled)
    batch = next(src.batches(100))
    old = DeepfakeScorer(tiny_checkpoint, with_logits=True, calibration=Calibration(slope=0.5))
    batch.update(old.score_images(batch["image"]))
    batch["truth"] = [im["path"].split("/")[0] for im in batch["image"]]
    path = tmp_path / "scored.parquet"
    write_parquet([batch], path, metadata=old.metadata())

    out = tmp_path / "eval"
    proc = subprocess.run(
        [
            sys.executable, "-m", "curate.cli", "eval", path, "--rescore", "--out-dir", out,
            "--label-column", "truth", "--fit-calibration", "temperature",
            "--calibration-holdout", "0", "--bootstrap", "20", "--robustness",
            "--perturb", "jpeg:50", "--probe-limit", "100",
        ],
        capture_output=True, text=True, env={**CLI_ENV, "CURATE_MODEL": other}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == other
    assert report["scored_with"] is None  # the new scores carry no calibration
    assert Calibration.load(out / "calibration.json").model == other
    scores = pq.read_table(out / "scores.parquet").to_pydict()
    stored = [p for p in batch["fake_prob"] if p is not None]
    assert not np.allclose(sorted(scores["fake_prob"]), sorted(stored), atol=1e-3)
    # The probe's unperturbed row is the sample as re-scored: every image, same scores.
    original = report["robustness"][0]
    assert original["n"] == len(scores["fake_prob"])
    expected = np.mean(scores["fake_prob_calibrated"])
    assert original["mean_fake_prob"] == pytest.approx(expected, abs=1e-5)
