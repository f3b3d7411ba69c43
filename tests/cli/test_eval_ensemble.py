"""`curate eval` on scores an ensemble made: the report names the ensemble, measures each
member beside it, and the robustness probe re-scores with the same ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SPREAD
from conftest import run_curate as curate
from PIL import Image, ImageOps

from curate import schema
from curate.testing import build_random_checkpoint

F32 = ("--device", "cpu", "--dtype", "float32")


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> str:
    """A second tiny random detector (another seed): the ensemble's other member."""
    path = tmp_path_factory.mktemp("ckpt") / "other"
    return build_random_checkpoint(path, classifier_scale=SPREAD, seed=1)


@pytest.fixture(scope="module")
def scored_by_ensemble(tmp_path_factory, photo_paths, tiny_checkpoint, other_checkpoint):
    """A folder of fake/ and real/ images scored by `curate score --model A --model B
    --combine max`, with a ground-truth column added as a user would."""
    root = tmp_path_factory.mktemp("ens")
    images = root / "images"
    for sub in ("real", "fake"):
        (images / sub).mkdir(parents=True)
    for i, p in enumerate(photo_paths):
        img = Image.open(p).convert("RGB")
        img.save(images / "real" / f"{i}.png")
        ImageOps.posterize(img, 3).save(images / "fake" / f"{i}.jpg", quality=85)
        ImageOps.mirror(img).save(images / "fake" / f"m{i}.png")
    scored = root / "scored.parquet"
    proc = curate("score", images, "-o", scored, "--model", tiny_checkpoint,
                  "--model", other_checkpoint, "--combine", "max", *F32)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(scored)
    paths = [im["path"] for im in table.column("image").to_pylist()]
    truth = [Path(p).parent.name for p in paths]
    labelled = root / "labelled.parquet"
    pq.write_table(table.append_column("truth", pa.array(truth)), labelled)
    return labelled


def test_eval_of_ensemble_scores_names_the_ensemble_and_probes_with_it(
    scored_by_ensemble, tiny_checkpoint, other_checkpoint, tmp_path
):
    out = tmp_path / "report"
    proc = curate("eval", scored_by_ensemble, "--label-column", "truth", "--out-dir", out,
                  "--robustness", "--perturb", "jpeg:75", "--bootstrap", "20", *F32)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    members = [tiny_checkpoint, other_checkpoint]
    assert report["model"] == members and report["combine"] == "max"
    assert report["scored_by"] == f"ensemble (max) of {tiny_checkpoint}, {other_checkpoint}"
    assert f"model: `{report['scored_by']}`" in (out / "report.md").read_text()

    # The probe re-scored every labelled image with the same ensemble: its unperturbed row
    # is the stored scores (before, it was built from the JSON list as one model id).
    assert report["robustness_scored_by"] == report["scored_by"]
    original = report["robustness"][0]
    assert original["perturbation"] == "original" and original["n"] == 15
    table = pq.read_table(scored_by_ensemble).to_pydict()
    stored = [p for p in table[schema.FAKE_PROB] if p is not None]
    assert original["mean_fake_prob"] == pytest.approx(np.mean(stored), abs=1e-5)
    assert original["roc_auc"] == pytest.approx(report["metrics"]["roc_auc"], abs=1e-9)


def test_eval_reports_each_member_beside_the_ensemble(
    scored_by_ensemble, tiny_checkpoint, other_checkpoint, tmp_path
):
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = tmp_path / "report"
    proc = curate("eval", scored_by_ensemble, "--label-column", "truth", "--out-dir", out,
                  "--bootstrap", "20")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    table = pq.read_table(scored_by_ensemble).to_pydict()
    rows = [i for i, p in enumerate(table[schema.FAKE_PROB]) if p is not None]
    y = [table["truth"][i] == "fake" for i in rows]
    figures = report["members"]
    assert [f["model"] for f in figures] == [tiny_checkpoint, other_checkpoint]
    for j, f in enumerate(figures):
        p = [table[schema.MEMBER_PROBS][i][j] for i in rows]
        assert f["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
        assert f["average_precision"] == pytest.approx(average_precision_score(y, p), abs=1e-9)
    # The console and report.md show them beside the ensemble's own figures.
    assert "Ensemble members alone (same rows):" in proc.stdout
    assert "ensemble (max)" in proc.stdout and other_checkpoint in proc.stdout
    md = (out / "report.md").read_text()
    assert "## Ensemble members" in md
    assert f"| {tiny_checkpoint} | {figures[0]['roc_auc']:.4f} |" in md
