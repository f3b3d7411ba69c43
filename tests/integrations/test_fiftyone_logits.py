"""FiftyOne stores a Classification's logits per class of a two-class checkpoint only: an
ensemble's or a three-class checkpoint's combined gap is no class's logit."""

from __future__ import annotations

import fiftyone as fo
import pytest

from curate import DeepfakeScorer
from curate.integrations import fiftyone as cfo
from curate.testing import build_random_checkpoint


@pytest.fixture(scope="module")
def three_class(tmp_path_factory):
    return build_random_checkpoint(
        tmp_path_factory.mktemp("three") / "ckpt",
        id2label={0: "Artificial", 1: "Deepfake", 2: "Real"},
    )


@pytest.mark.parametrize("kind", ["two", "ensemble", "three"])
def test_logits_stored_only_for_two_classes(
    kind, tiny_checkpoint, swapped_checkpoint, three_class, photo_paths
):
    model = {
        "two": tiny_checkpoint,
        "ensemble": [tiny_checkpoint, swapped_checkpoint],
        "three": three_class,
    }[kind]
    scorer = DeepfakeScorer(model, device="cpu", dtype="float32", with_logits=True, batch_size=4)
    dataset = fo.Dataset()
    try:
        dataset.add_samples([fo.Sample(filepath=p) for p in photo_paths])
        cfo.score_samples(dataset, scorer)
        labels = dataset.values("deepfake")
        assert all(label is not None for label in labels)
        logits = [label.logits for label in labels]
        if kind == "two":
            assert all(len(v) == 2 for v in logits)
        else:
            assert all(v is None for v in logits)
        assert dataset.values("fake_prob") == pytest.approx(
            scorer.score_images(photo_paths)["fake_prob"], abs=1e-6
        )
    finally:
        dataset.delete()
