"""Ensembles: several detectors of different families scored as one, through every front end.

The members are a SigLIP (64x64 fixed-size bilinear, labels Fake/Real) and a ConvNeXt
(shortest edge 256 bicubic + centre crop 224, ImageNet normalisation, labels
artificial/human): an image is decoded once and each member gets its own preprocessing, so
the ensemble must equal its members scored alone.
"""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_curate
from datasets import Dataset, Features, Image, Value, load_dataset

from curate import DeepfakeScorer
from curate.calibration import Calibration, fake_probability
from curate.detectors import ModelLoadError
from curate.detectors.ensemble import COMBINE_MODES, combine_gaps
from curate.testing import build_random_classifier

F32 = dict(device="cpu", dtype="float32")
_F32_CLI = ("--device", "cpu", "--dtype", "float32")
CONTRACT = ("fake_prob", "real_prob", "deepfake_label", "deepfake_error")
MEMBERS = "member_fake_probs"


@pytest.fixture(scope="module")
def convnext_checkpoint(tmp_path_factory, photo_paths) -> str:
    return build_random_classifier(
        tmp_path_factory.mktemp("ckpt") / "convnext",
        "convnext",
        labels=("artificial", "human"),
        spread_on=photo_paths,
        seed=1,
    )


@pytest.fixture(scope="module")
def pair(tiny_checkpoint, convnext_checkpoint) -> list[str]:
    return [tiny_checkpoint, convnext_checkpoint]


@pytest.fixture(scope="module")
def good_images(photo_paths, mode_images) -> list[str]:
    return list(photo_paths) + list(mode_images.values())


def _alone(checkpoint: str, images: list, **kw) -> dict[str, list]:
    return DeepfakeScorer(checkpoint, **F32, **kw).score_images(images)


def _gap(out: dict[str, list]) -> np.ndarray:
    return np.array(out["fake_logit"], dtype=np.float64) - np.array(out["real_logit"])


def test_mean_is_the_mean_of_the_members_scored_alone(
    pair, good_images, broken_images, tiny_checkpoint, convnext_checkpoint
):
    broken = list(broken_images.values())
    batch = [x for two in zip(broken, good_images, strict=False) for x in two]
    batch += good_images[len(broken) :]
    a = np.array(_alone(tiny_checkpoint, good_images)["fake_prob"])
    b = np.array(_alone(convnext_checkpoint, good_images)["fake_prob"])
    assert np.abs(a - b).mean() > 0.1, "fixture too weak: the members agree"

    out = DeepfakeScorer(pair, batch_size=3, **F32)({"image": batch})

    assert tuple(out) == (*CONTRACT, MEMBERS)
    assert all(len(v) == len(batch) for v in out.values())
    for i, item in enumerate(batch):
        if item in broken:
            assert out["deepfake_error"][i], i
            assert out["fake_prob"][i] is None and out[MEMBERS][i] is None
            assert out["deepfake_label"][i] is None
            continue
        j = good_images.index(item)
        assert out["deepfake_error"][i] is None
        assert out["fake_prob"][i] == pytest.approx((a[j] + b[j]) / 2, abs=1e-6)
        assert out[MEMBERS][i] == pytest.approx([a[j], b[j]], abs=1e-6)
        assert out["fake_prob"][i] + out["real_prob"][i] == pytest.approx(1.0, abs=1e-6)
        assert out["deepfake_label"][i] == ("Fake" if out["fake_prob"][i] >= 0.5 else "Real")


@pytest.mark.parametrize("combine", ["max", "logit_mean"])
def test_max_and_logit_mean_combine_the_members_gaps(combine, pair, photo_paths):
    gaps = np.stack([_gap(_alone(m, photo_paths, with_logits=True)) for m in pair])
    expected = gaps.max(axis=0) if combine == "max" else gaps.mean(axis=0)
    out = DeepfakeScorer(pair, combine=combine, with_logits=True, **F32).score_images(photo_paths)
    np.testing.assert_allclose(out["fake_prob"], fake_probability(expected), atol=1e-6)
    # fake_logit - real_logit is the combined gap itself (real_logit 0).
    np.testing.assert_allclose(_gap(out), expected, atol=1e-5)
    assert set(out["real_logit"]) == {0.0}


def test_calibration_applies_to_the_combined_score(pair, photo_paths):
    plain = DeepfakeScorer(pair, with_logits=True, **F32).score_images(photo_paths)
    gap = _gap(plain)
    np.testing.assert_allclose(fake_probability(gap), plain["fake_prob"], atol=1e-6)
    calibrated = DeepfakeScorer(
        pair, calibration=Calibration.temperature(3.0), with_logits=True, **F32
    ).score_images(photo_paths)
    np.testing.assert_allclose(calibrated["fake_prob"], fake_probability(gap / 3.0), atol=1e-6)
    assert not np.allclose(calibrated["fake_prob"], plain["fake_prob"], atol=1e-3)
    # Members keep their own, uncalibrated probabilities: the calibration is the ensemble's.
    np.testing.assert_allclose(calibrated[MEMBERS], plain[MEMBERS], atol=1e-7)


def test_combine_keeps_precision_at_the_extremes():
    gaps = [np.array([-800.0, 40.0, 0.0, 3.0]), np.array([-790.0, 60.0, 0.0, -3.0])]
    mean = combine_gaps(gaps, "mean")
    # log((e^-800 + e^-790) / 2) - log(1): probabilities far below float64's 1e-308.
    assert mean[0] == pytest.approx(-790 + np.log((1 + np.exp(-10)) / 2), abs=1e-9)
    assert np.isfinite(mean).all() and mean[1] > 40 and mean[2] == 0.0
    assert mean[3] == pytest.approx(0.0, abs=1e-12)  # sigmoid(3) + sigmoid(-3) = 1
    assert combine_gaps(gaps, "max").tolist() == [-790.0, 60.0, 0.0, 3.0]
    assert combine_gaps(gaps, "logit_mean").tolist() == [-795.0, 50.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="combine must be one of mean, max, logit_mean"):
        combine_gaps(gaps, "median")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(combine="median"), "combine must be one of mean, max, logit_mean, got 'median'"),
        (dict(revision="main"), "a revision pins one model; give a list"),
        (dict(synthetic_labels={"elsewhere": "x"}), "names elsewhere, which is not one of"),
        (dict(revision=["main"]), "2 models but 1 revisions"),
        (dict(head="."), "head= adapts one model, not an ensemble"),
    ],
)
def test_bad_ensemble_settings_fail_before_loading(pair, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeepfakeScorer(pair, **kwargs)


def test_a_member_named_twice_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="names .* twice"):
        DeepfakeScorer([tiny_checkpoint, tiny_checkpoint])
    assert DeepfakeScorer([tiny_checkpoint]).model == tiny_checkpoint  # one member: one model


def test_metadata_names_the_members_in_column_order(pair):
    meta = DeepfakeScorer(pair, combine="max", **F32).metadata()
    assert meta["curate.members"] == f'["{pair[0]}", "{pair[1]}"]'
    assert meta["curate.combine"] == "max"
    single = DeepfakeScorer(pair[0], **F32).metadata()
    assert "curate.members" not in single and "curate.combine" not in single
    assert COMBINE_MODES[0] == "mean" == DeepfakeScorer(pair).combine


def test_pickles_as_settings_and_datasets_map_types_members(pair, photo_paths, broken_images):
    scorer = DeepfakeScorer(pair, batch_size=2, **F32)
    expected = scorer.score_images(photo_paths)
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._detector is None and len(pickle.dumps(scorer)) < 2000
    # The first batch is all unreadable: the list column must still be typed list<float32>.
    files = [broken_images["truncated"], broken_images["not_an_image"], *photo_paths]
    ds = Dataset.from_dict({"image": [{"bytes": None, "path": p} for p in files]})
    ds = ds.cast(Features({"image": Image(decode=False)}))
    scored = ds.map(clone, batched=True, batch_size=2)
    assert scored.features[MEMBERS].feature == Value("float32")
    assert scored[MEMBERS][:2] == [None, None]
    np.testing.assert_allclose(scored[MEMBERS][2:], expected[MEMBERS], atol=1e-6)
    np.testing.assert_allclose(scored["fake_prob"][2:], expected["fake_prob"], atol=1e-6)


def test_cli_scores_with_repeated_model(pair, image_folder, tmp_path, photo_paths):
    out = tmp_path / "scored.parquet"
    result = run_curate(
        "score", image_folder, "-o", out, "--model", pair[0], "--model", pair[1],
        "--combine", "logit_mean", "--device", "cpu", "--dtype", "float32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out)
    meta = table.schema.metadata
    assert meta[b"curate.combine"] == b"logit_mean"
    assert meta[b"curate.members"] == f'["{pair[0]}", "{pair[1]}"]'.encode()
    assert str(table.schema.field(MEMBERS).type) == "list<element: float>"
    ds = load_dataset("parquet", data_files=str(out), split="train")
    assert ds.features[MEMBERS].feature == Value("float32")
    by_name = {row["image"]["path"].rsplit("/", 1)[-1]: row for row in table.to_pylist()}
    direct = DeepfakeScorer(pair, combine="logit_mean", **F32).score_images(photo_paths)
    for i, path in enumerate(photo_paths):
        row = by_name[path.rsplit("/", 1)[-1]]
        assert row["fake_prob"] == pytest.approx(direct["fake_prob"][i], abs=1e-6)
        assert row[MEMBERS] == pytest.approx(direct[MEMBERS][i], abs=1e-6)


def test_cli_refuses_a_bad_combine_in_one_line(pair, image_folder, tmp_path):
    result = run_curate(
        "score", image_folder, "-o", tmp_path / "x.parquet", "--model", pair[0],
        "--model", pair[1], "--combine", "vote", "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 2
    assert "combine must be one of mean, max, logit_mean" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.parquet").exists()


def test_ray_actors_score_the_ensemble(pair, photo_paths):
    ray = pytest.importorskip("ray")
    from curate.integrations.ray import score_ray_dataset

    scorer = DeepfakeScorer(pair, combine="max", **F32)
    expected = scorer.score_images(photo_paths)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items([{"image": p} for p in photo_paths])
        rows = score_ray_dataset(ds, scorer, concurrency=1).take_all()
    finally:
        ray.shutdown()
    got = {r["image"]: r for r in rows}
    for i, path in enumerate(photo_paths):
        assert got[path]["fake_prob"] == pytest.approx(expected["fake_prob"][i], abs=1e-6)
        assert list(got[path][MEMBERS]) == pytest.approx(expected[MEMBERS][i], abs=1e-6)


def test_fiftyone_scores_samples_with_the_ensemble(pair, photo_paths, broken_images):
    fo = pytest.importorskip("fiftyone")
    from curate.integrations import fiftyone as cfo

    files = [*photo_paths, broken_images["truncated"]]
    dataset = fo.Dataset()
    try:
        dataset.add_samples([fo.Sample(filepath=p) for p in files])
        scorer = DeepfakeScorer(pair, **F32)
        cfo.score_samples(dataset, scorer)
        expected = scorer.score_images(files)
        probs = dict(zip(*dataset.values(["filepath", "fake_prob"]), strict=True))
        for i, path in enumerate(files):
            want = expected["fake_prob"][i]
            assert (probs[path] is None) if want is None else probs[path] == pytest.approx(want)
        settings = cfo.scoring_settings(dataset)
        assert settings["curate.members"] == f'["{pair[0]}", "{pair[1]}"]'
    finally:
        dataset.delete()


def test_synthetic_labels_per_member_and_on_the_command_line(
    tiny_checkpoint, photo_paths, tmp_path, image_folder
):
    # Labels no synonym matches: only an explicit mapping makes this checkpoint a detector.
    vit = build_random_classifier(
        tmp_path / "vit", "vit", labels=("LABEL_0", "LABEL_1"), spread_on=photo_paths, seed=2
    )
    alone = _alone(vit, photo_paths, synthetic_labels="LABEL_0")["fake_prob"]
    flipped = _alone(vit, photo_paths, synthetic_labels=["label_1"])["fake_prob"]
    np.testing.assert_allclose(alone, 1 - np.array(flipped), atol=1e-6)
    siglip = _alone(tiny_checkpoint, photo_paths)["fake_prob"]
    both = DeepfakeScorer([tiny_checkpoint, vit], synthetic_labels={vit: "LABEL_0"}, **F32)
    out = both.score_images(photo_paths)
    np.testing.assert_allclose(out[MEMBERS], np.stack([siglip, alone], axis=1), atol=1e-6)
    with pytest.raises(ModelLoadError, match="LABEL_0.*synthetic_labels"):
        DeepfakeScorer(vit, **F32).load()

    scored = tmp_path / "vit.parquet"
    result = run_curate("score", image_folder, "-o", scored, "--model", vit,
                        "--synthetic-labels", "LABEL_0", *_F32_CLI)  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pq.read_table(scored)
    assert table.schema.metadata[b"curate.synthetic_labels"] == b"LABEL_0"
    got = {r["image"]["path"]: r["fake_prob"] for r in table.to_pylist()}
    for path, p in zip(photo_paths, alone, strict=True):
        assert got[path.rsplit("/", 1)[-1]] == pytest.approx(p, abs=1e-6)
