"""DeepfakeScorer's contract: columns, bad rows, batching, pickling, and `datasets.map`."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, Features, Image, Value, load_from_disk

from curate import DeepfakeScorer, score_dataset

CONTRACT = ("fake_prob", "real_prob", "deepfake_label", "deepfake_error")


def test_contract_columns(tiny_checkpoint, photo_paths):
    out = DeepfakeScorer(tiny_checkpoint, device="cpu")(
        {"image": photo_paths, "other": photo_paths}
    )
    assert tuple(out) == CONTRACT  # only the new columns: datasets never rewrites the images
    for f, r, label, err in zip(*(out[c] for c in CONTRACT), strict=True):
        assert err is None
        assert np.float32(f) + np.float32(r) == pytest.approx(1.0, abs=1e-6)
        assert label == ("Fake" if f > r else "Real")
    assert len(set(out["deepfake_label"])) == 2, "fixture should give both labels"


def test_mixed_batch_keeps_every_row(tiny_checkpoint, photo_paths, mode_images, broken_images):
    good = photo_paths + list(mode_images.values())
    broken = list(broken_images.values())
    batch = [x for pair in zip(good, broken, strict=False) for x in pair] + good[len(broken) :]
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=3)
    out = scorer({"image": batch})
    alone = scorer.score_images(good)
    assert all(len(v) == len(batch) for v in out.values())
    for i, item in enumerate(batch):
        if item in broken:
            assert out["deepfake_error"][i], i
            assert out["fake_prob"][i] is None and out["deepfake_label"][i] is None
        else:
            j = good.index(item)
            assert out["deepfake_error"][i] is None
            assert out["fake_prob"][i] == pytest.approx(alone["fake_prob"][j], abs=1e-6)


def test_chunking_does_not_change_scores(tiny_checkpoint, photo_paths):
    images = photo_paths * 3
    small = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=2).score_images(images)
    big = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=64).score_images(images)
    np.testing.assert_allclose(small["fake_prob"], big["fake_prob"], atol=1e-6)


def test_missing_image_column_says_what_to_do(tiny_checkpoint):
    with pytest.raises(KeyError, match="image_column"):
        DeepfakeScorer(tiny_checkpoint)({"img": []})


def test_pickles_as_settings_not_weights(tiny_checkpoint, photo_paths):
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=4)
    before = pickle.dumps(scorer)
    scorer.score_images(photo_paths[:1])  # loads the model and starts decode threads
    after = pickle.dumps(scorer)
    assert after == before and len(after) < 2000
    clone = pickle.loads(after)
    assert clone._detector is None
    np.testing.assert_allclose(
        clone.score_images(photo_paths)["fake_prob"],
        scorer.score_images(photo_paths)["fake_prob"],
        atol=1e-6,
    )


def _datasets(photo_paths):
    paths = Dataset.from_dict({"image": photo_paths})
    decoded = paths.cast_column("image", Image())
    raw = paths.cast_column("image", Image(decode=False))
    return {"paths": paths, "decoded": decoded, "undecoded": raw}


def test_datasets_map_every_column_kind(tiny_checkpoint, photo_paths):
    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", batch_size=2)
    expected = scorer.score_images(photo_paths)["fake_prob"]
    for name, ds in _datasets(photo_paths).items():
        scored = ds.map(scorer, batched=True, batch_size=3)
        assert scored.column_names == ["image", *CONTRACT], name
        np.testing.assert_allclose(scored["fake_prob"], expected, atol=1e-6, err_msg=name)


def test_score_dataset_features_and_image_column(tiny_checkpoint, photo_paths):
    ds = _datasets(photo_paths)["decoded"]
    scored = score_dataset(ds, model=tiny_checkpoint, device="cpu", batch_size=2)
    assert scored.features["image"] == Image()  # decoding restored after the undecoded map
    assert scored.features["fake_prob"] == Value("float32")
    assert scored.features["deepfake_error"] == Value("string")
    assert scored[0]["image"].size == ds[0]["image"].size
    with pytest.raises(ValueError, match="image column 'picture' not found"):
        score_dataset(ds, model=tiny_checkpoint, image_column="picture")


def test_dataset_with_broken_rows_finishes(tiny_checkpoint, photo_paths, broken_images):
    files = photo_paths + [v for v in broken_images.values() if isinstance(v, str)]
    ds = Dataset.from_dict({"image": [{"bytes": None, "path": p} for p in files]})
    ds = ds.cast(Features({"image": Image(decode=False)}))
    scored = score_dataset(ds, model=tiny_checkpoint, device="cpu")
    errors = scored["deepfake_error"]
    assert [e is None for e in errors] == [True] * len(photo_paths) + [False] * (
        len(files) - len(photo_paths)
    )


_FINGERPRINT = """
import json, sys
from datasets.fingerprint import Hasher
from curate import DeepfakeScorer
print(json.dumps([Hasher.hash(DeepfakeScorer(sys.argv[1], **kw)) for kw in json.loads(sys.argv[2])]))
"""


def _fingerprints(checkpoint, settings):
    out = subprocess.run(
        [sys.executable, "-c", _FINGERPRINT, checkpoint, json.dumps(settings)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fingerprint_is_stable_across_processes(tiny_checkpoint):
    settings = [{}, {"revision": "v2"}, {"dtype": "bfloat16"}, {"batch_size": 8}]
    first = _fingerprints(tiny_checkpoint, settings)
    second = _fingerprints(tiny_checkpoint, settings)
    assert first == second
    assert len(set(first)) == len(settings)  # each setting that matters changes it


_MAP = """
import sys
from datasets import load_from_disk
from curate import DeepfakeScorer
ds = load_from_disk(sys.argv[1])
kw = {"dtype": sys.argv[3]} if len(sys.argv) > 3 else {}
scored = ds.map(DeepfakeScorer(sys.argv[2], device="cpu", **kw), batched=True)
print(scored.cache_files[0]["filename"])
print(",".join(f"{p:.6f}" for p in scored["fake_prob"]))
"""


def test_cache_is_reused_by_a_new_process(tiny_checkpoint, photo_paths, tmp_path):
    saved = tmp_path / "ds"
    Dataset.from_dict({"image": photo_paths}).save_to_disk(saved)
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)

    def run(*extra):
        out = subprocess.run(
            [sys.executable, "-c", _MAP, str(saved), str(model), *extra],
            capture_output=True,
            text=True,
        )
        return out.returncode, out.stdout.split("\n"), out.stderr

    rc, (cache, probs, *_), err = run()
    assert rc == 0, err
    # Empty the model folder: a second process can only succeed by reusing the cache.
    shutil.rmtree(model)
    model.mkdir()
    rc, (cache2, probs2, *_), err = run()
    assert rc == 0, err
    assert (cache2, probs2) == (cache, probs)
    # Different settings must not reuse it: this run needs the (now missing) model.
    rc, _, err = run("bfloat16")
    assert rc != 0 and "ModelLoadError" in err
    assert Path(cache).exists() and os.path.getsize(cache) > 0
    assert load_from_disk(str(saved)).num_rows == len(photo_paths)


def test_calibration_for_another_model_is_flagged(tiny_checkpoint, caplog):
    from curate.calibration import Calibration

    DeepfakeScorer(tiny_checkpoint, calibration=Calibration.temperature(2.0, model="other")).load()
    assert "fitted for 'other'" in caplog.text
    caplog.clear()
    DeepfakeScorer(
        tiny_checkpoint, calibration=Calibration.temperature(2.0, model=tiny_checkpoint)
    ).load()
    assert "fitted for" not in caplog.text
