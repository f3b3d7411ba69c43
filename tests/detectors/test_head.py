"""Adapted heads: saved and loaded, fitted, attached in place of a checkpoint's classifier
(every family), refused on another backbone, and used by every front end like any model."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from datasets import Dataset, Features, Image

from curate import DeepfakeScorer
from curate.calibration import fake_probability
from curate.detectors.head import (
    HEAD_CONFIG,
    HeadMismatchError,
    LinearHead,
    backbone_weights_sha256,
    captured_embeddings,
    fit_head,
)
from curate.testing import build_random_checkpoint, build_random_classifier

F32 = dict(device="cpu", dtype="float32")


def _random_head(checkpoint: str, dim: int, seed: int = 0) -> LinearHead:
    rng = np.random.default_rng(seed)
    return LinearHead(
        weight=rng.normal(size=(2, dim)).astype(np.float32),
        bias=rng.normal(size=2).astype(np.float32),
        backbone=os.path.abspath(checkpoint),
        weights_sha256=backbone_weights_sha256(checkpoint),
        info={"note": "random"},
    )


def _embeddings(checkpoint: str, images: list) -> tuple[np.ndarray, dict]:
    scorer = DeepfakeScorer(checkpoint, **F32)
    with captured_embeddings(scorer.detector.model) as passes:
        out = scorer.score_images(images)
    return np.concatenate(passes), out


@pytest.fixture(scope="module")
def head_dir(tiny_checkpoint, photo_paths, tmp_path_factory) -> str:
    emb, _ = _embeddings(tiny_checkpoint, photo_paths)
    folder = tmp_path_factory.mktemp("heads") / "head"
    return _random_head(tiny_checkpoint, emb.shape[1]).save(folder)


def test_head_round_trips_through_its_folder(tmp_path, tiny_checkpoint):
    head = _random_head(tiny_checkpoint, 32)
    folder = head.save(tmp_path / "h")
    assert sorted(os.listdir(folder)) == ["head.json", "head.safetensors"]
    back = LinearHead.load(folder)
    np.testing.assert_array_equal(back.weight, head.weight)
    np.testing.assert_array_equal(back.bias, head.bias)
    assert (back.backbone, back.revision, back.weights_sha256) == (
        head.backbone,
        None,
        head.weights_sha256,
    )
    assert back.embedding_dim == 32 and back.info == {"note": "random"}
    with pytest.raises(FileExistsError, match="--overwrite"):
        head.save(folder)
    _random_head(tiny_checkpoint, 32, seed=1).save(folder, overwrite=True)
    assert not np.array_equal(LinearHead.load(folder).weight, head.weight)
    assert sorted(os.listdir(tmp_path)) == ["h"]  # no temporary folders left behind


def test_a_folder_that_is_not_a_head_is_refused(tmp_path, tiny_checkpoint, head_dir):
    with pytest.raises(HeadMismatchError, match="is not an adapted head .*`curate adapt`"):
        LinearHead.load(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(head_dir, broken)
    (broken / "head.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(HeadMismatchError, match="cannot read the head"):
        LinearHead.load(broken)
    with pytest.raises(ValueError, match="is not a folder"):
        DeepfakeScorer(tiny_checkpoint, head=tmp_path / "missing")


def test_fit_head_is_balanced_l2_logistic_regression_on_standardised_embeddings():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    # 40 Fake, 160 Real; the classes differ along one small-variance axis only.
    x = rng.normal(size=(200, 8)) * np.array([50, 30, 20, 10, 5, 2, 1, 0.1])
    y = np.r_[np.ones(40), np.zeros(160)].astype(int)
    x[y == 1, 7] += 0.5
    fit = fit_head(x, y)
    z = (x - x.mean(0)) / x.std(0)
    ref = LogisticRegression(C=fit.C, class_weight="balanced", max_iter=5000).fit(z, y)
    np.testing.assert_allclose(x @ fit.coef + fit.intercept, ref.decision_function(z), atol=1e-6)
    assert fit.folds == 5 and fit.C in np.logspace(-4, 2, 13)
    fresh = rng.normal(size=(400, 8)) * np.array([50, 30, 20, 10, 5, 2, 1, 0.1])
    fy = np.r_[np.ones(200), np.zeros(200)].astype(int)
    fresh[fy == 1, 7] += 0.5
    predicted = (fresh @ fit.coef + fit.intercept) > 0
    assert (predicted == fy).mean() > 0.95
    with pytest.raises(ValueError, match="at least 2 labelled images of each class"):
        fit_head(x[:41], np.r_[1, np.zeros(40, int)])


@pytest.mark.parametrize("family", ["siglip", "vit", "convnext", "clip"])
def test_an_attached_head_scores_the_classifiers_input(family, photo_paths, tmp_path):
    checkpoint = build_random_classifier(tmp_path / family, family, spread_on=photo_paths[:3])
    emb, base = _embeddings(checkpoint, photo_paths)
    head = _random_head(checkpoint, emb.shape[1])
    scorer = DeepfakeScorer(checkpoint, head=head.save(tmp_path / "head"), with_logits=True, **F32)
    out = scorer.score_images(photo_paths)
    np.testing.assert_allclose(out["fake_prob"], fake_probability(head.gap(emb)), atol=1e-5)
    np.testing.assert_allclose(
        np.array(out["fake_logit"]) - np.array(out["real_logit"]), head.gap(emb), atol=1e-4
    )
    assert not np.allclose(out["fake_prob"], base["fake_prob"], atol=1e-3)
    assert scorer.detector.model.config.id2label == {0: "Fake", 1: "Real"}


def test_a_head_on_another_backbone_is_refused(tiny_checkpoint, head_dir, tmp_path, photo_paths):
    other = build_random_checkpoint(tmp_path / "other", seed=1)  # same shapes, other weights
    with pytest.raises(HeadMismatchError, match=r"fitted on .*tiny, not on .*other.*curate adapt"):
        DeepfakeScorer(other, head=head_dir)
    # The same weights elsewhere (a copied folder) are the same backbone.
    moved = str(shutil.copytree(tiny_checkpoint, tmp_path / "moved"))
    here = DeepfakeScorer(tiny_checkpoint, head=head_dir, **F32).score_images(photo_paths)
    there = DeepfakeScorer(moved, head=head_dir, **F32).score_images(photo_paths)
    assert there["fake_prob"] == pytest.approx(here["fake_prob"], abs=1e-7)
    # A head whose width does not match the classifier is refused at load, not guessed.
    narrow = _random_head(tiny_checkpoint, 16).save(tmp_path / "narrow")
    with pytest.raises(HeadMismatchError, match="16-wide embeddings .* reads 32"):
        DeepfakeScorer(tiny_checkpoint, head=narrow).load()


def test_metadata_identifies_the_head(tiny_checkpoint, head_dir):
    meta = DeepfakeScorer(tiny_checkpoint, head=head_dir).metadata()
    assert meta["curate.head"] == os.path.abspath(head_dir)
    assert len(meta["curate.head_sha256"]) == 64
    assert "curate.head" not in DeepfakeScorer(tiny_checkpoint).metadata()
    assert os.path.exists(os.path.join(head_dir, HEAD_CONFIG))


def test_datasets_map_ray_and_fiftyone_score_with_the_head(
    tiny_checkpoint, head_dir, photo_paths, broken_images
):
    scorer = DeepfakeScorer(tiny_checkpoint, head=head_dir, batch_size=2, **F32)
    files = [broken_images["truncated"], *photo_paths]
    expected = scorer.score_images(files)
    assert expected["deepfake_error"][0] and expected["fake_prob"][0] is None

    ds = Dataset.from_dict({"image": [{"bytes": None, "path": p} for p in files]})
    scored = ds.cast(Features({"image": Image(decode=False)})).map(scorer, batched=True)
    np.testing.assert_allclose(scored["fake_prob"][1:], expected["fake_prob"][1:], atol=1e-6)
    assert scored["fake_prob"][0] is None

    ray = pytest.importorskip("ray")
    from curate.integrations.ray import score_ray_dataset

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        rows = score_ray_dataset(
            ray.data.from_items([{"image": p} for p in files]), scorer, concurrency=1
        ).take_all()
    finally:
        ray.shutdown()
    by_path = {r["image"]: r["fake_prob"] for r in rows}
    assert [by_path[p] for p in files] == pytest.approx(expected["fake_prob"], abs=1e-6)

    fo = pytest.importorskip("fiftyone")
    from curate.integrations import fiftyone as cfo

    dataset = fo.Dataset()
    try:
        dataset.add_samples([fo.Sample(filepath=p) for p in files])
        cfo.score_samples(dataset, scorer)
        probs = dict(zip(*dataset.values(["filepath", "fake_prob"]), strict=True))
        assert [probs[p] for p in files] == pytest.approx(expected["fake_prob"], abs=1e-6)
        assert cfo.scoring_settings(dataset)["curate.head"] == os.path.abspath(head_dir)
    finally:
        dataset.delete()
