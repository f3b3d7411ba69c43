"""curate.evaluation.labels: ground-truth values, and the labelled sample of a source (stored
scores or scored by the scorer passed, with the model that made them recorded)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import SPREAD

from curate import evaluation as ev
from curate.calibration import Calibration, fake_probability
from curate.io.parquet import write_parquet
from curate.scorer import DeepfakeScorer
from curate.sources import resolve_source
from curate.testing import build_random_checkpoint


def test_labels_by_name_map_and_errors():
    y, ok = ev.encode_labels(["Fake", "real", None, "FAKE", "", "Real"])
    assert y[ok].tolist() == [1, 0, 1, 0] and ok.tolist() == [1, 1, 0, 1, 0, 1]
    lm = ev.parse_label_map("1=Fake, 0=Real")
    y, ok = ev.encode_labels([1, 0, 0, 1], lm)
    assert y.tolist() == [1, 0, 0, 1] and ok.all()
    assert ev.parse_label_map(["midjourney=fake", "photo=Real"]) == {
        "midjourney": "Fake",
        "photo": "Real",
    }
    with pytest.raises(ev.EvaluationError, match="explicit map"):
        ev.encode_labels([0, 1])
    with pytest.raises(ev.EvaluationError, match="'cat' \\(2\\)"):
        ev.encode_labels(["fake", "cat", "cat"])
    with pytest.raises(ValueError, match="must be Fake or Real"):
        ev.parse_label_map("a=maybe")
    with pytest.raises(ValueError, match="VALUE=Fake"):
        ev.parse_label_map("nonsense")


@pytest.fixture
def labelled_folder(tmp_path, photo_paths):
    root = tmp_path / "labelled"
    for i, p in enumerate(photo_paths):
        sub = root / ("fake/gen_a" if i % 2 else "real")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, sub)
    (root / "fake" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_collect_from_folder_and_from_scored_parquet(tiny_checkpoint, labelled_folder, tmp_path):
    scorer = DeepfakeScorer(tiny_checkpoint, with_logits=True, batch_size=2)
    src = resolve_source(labelled_folder)
    seen = []
    s = ev.collect_labelled(src, "label", scorer=scorer, batch_size=3, progress=seen.append)
    assert sum(seen) == s.n_rows == len(s) + 1
    assert len(s.errors) == 1 and "broken.jpg" in s.errors[0]["image"]
    assert s.y.sum() == sum(1 for n in s.names if n.startswith("fake/"))
    assert {g for g in s.groups} == {"fake/gen_a", "real"}
    np.testing.assert_allclose(fake_probability(s.gap), s.p, atol=1e-6)
    assert s.model == tiny_checkpoint and s.calibration is None and not s.stored_scores

    # The same rows as a file written by `curate score` (with a calibration and no logits).
    cal = Calibration(slope=0.7, intercept=-0.4)
    scorer_c = DeepfakeScorer(tiny_checkpoint, batch_size=2, calibration=cal)
    batch = next(src.batches(100))
    batch.update(scorer_c.score_images(batch["image"]))
    batch["truth"] = [n["path"].split("/")[0] for n in batch["image"]]
    path = tmp_path / "scored.parquet"
    write_parquet([batch], path, metadata=scorer_c.metadata())
    s2 = ev.collect_labelled(resolve_source(str(path)), "truth")
    assert s2.model == tiny_checkpoint and s2.calibration == cal and s2.stored_scores
    assert not s2.gap_from_logits
    np.testing.assert_allclose(s2.gap, s.gap, atol=1e-4)  # the raw gaps, calibration undone
    np.testing.assert_array_equal(s2.y, s.y)
    with pytest.raises(ev.EvaluationError, match="no label column 'nope'"):
        ev.collect_labelled(resolve_source(str(path)), "nope")


def test_rescoring_records_the_model_that_scored(tiny_checkpoint, labelled_folder, tmp_path):
    """Scores made now are recorded as the scorer's, not as those of the model named in the
    file's metadata; images with no stored scores and no scorer are a clear error."""
    other = build_random_checkpoint(tmp_path / "other", classifier_scale=SPREAD, seed=1)
    src = resolve_source(labelled_folder)
    with pytest.raises(ev.EvaluationError, match="pass a scorer"):
        ev.collect_labelled(src, "label")
    old = DeepfakeScorer(tiny_checkpoint, calibration=Calibration(slope=0.5), with_logits=True)
    batch = next(src.batches(100))
    batch.update(old.score_images(batch["image"]))
    batch["label"] = [n["path"].split("/")[0] for n in batch["image"]]
    path = tmp_path / "scored.parquet"
    write_parquet([batch], path, metadata=old.metadata())
    scored = resolve_source(str(path))
    new = DeepfakeScorer(other, with_logits=True)
    stored = ev.collect_labelled(scored, "label", scorer=new)  # scores as stored
    assert (stored.model, stored.calibration) == (tiny_checkpoint, old.calibration)
    assert stored.revision is None and stored.stored_scores
    again = ev.collect_labelled(scored, "label", scorer=new, rescore=True)
    assert (again.model, again.calibration) == (other, None)
    assert not again.stored_scores
    direct = ev.collect_labelled(src, "label", scorer=new)
    np.testing.assert_allclose(again.gap, direct.gap, atol=1e-5)
    assert not np.allclose(again.gap, stored.gap, atol=1e-2)  # another model's scores
    with pytest.raises(ev.EvaluationError, match="pass a scorer"):
        ev.collect_labelled(scored, "label", rescore=True)


def test_collect_reads_classlabel_names(tiny_checkpoint, photo_paths, tmp_path):
    """A datasets ClassLabel column (ids 0/1) is read by its names, whatever their order."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    labels = [i % 2 for i in range(len(photo_paths))]
    ds = Dataset.from_dict(
        {"image": photo_paths, "kind": labels},
        features=Features({"image": ImageFeature(), "kind": ClassLabel(names=["real", "fake"])}),
    )
    ds.save_to_disk(tmp_path / "ds")
    scorer = DeepfakeScorer(tiny_checkpoint, with_logits=True)
    s = ev.collect_labelled(resolve_source(str(tmp_path / "ds")), "kind", scorer=scorer)
    assert s.y.tolist() == labels  # id 1 is "fake"


def test_sample_from_columns_and_hardest_mistakes():
    labels = ["fake", "real", None, "real", "fake", "fake"]
    probs = [0.9, 0.8, 0.5, 0.1, None, 0.05]
    s = ev.sample_from_columns(labels, probs, names=[f"{i}.jpg" for i in range(6)])
    assert s.y.tolist() == [1, 0, 0, 1] and s.rows.tolist() == [0, 1, 3, 5]
    assert s.n_unlabelled == 1 and [e["row"] for e in s.errors] == [4]
    np.testing.assert_allclose(fake_probability(s.gap), s.p, atol=1e-6)
    hard = ev.hardest_mistakes(s, s.p, 0.5, k=1)
    assert [(h["label"], h["image"]) for h in hard] == [("Real", "1.jpg"), ("Fake", "5.jpg")]
    # Only mistakes: at 0.85 the Real at 0.8 is kept (right); the Fakes at 0.05 are wrong.
    hard = ev.hardest_mistakes(s, s.p, 0.85)
    assert [(h["label"], h["image"]) for h in hard] == [("Fake", "5.jpg")]
