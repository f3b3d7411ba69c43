"""The detect operator takes an ensemble (comma-separated models, Combine) or an adapted head
the way the CLI and Python do, and its form says what is wrong with one in App terms."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import numpy as np
import pytest
from fiftyone.operators.executor import ExecutionError

from curate import DeepfakeScorer

DETECT = "@curate/deepfakes/detect_deepfakes"


@pytest.fixture
def dataset(photo_paths):
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=p) for p in photo_paths])
    yield ds
    ds.delete()


def test_the_operator_scores_an_ensemble(dataset, tiny_checkpoint, swapped_checkpoint, photo_paths):
    members = [tiny_checkpoint, swapped_checkpoint]
    foo.get_operator(DETECT)(dataset, model=members, combine="max", dtype="float32")
    expected = DeepfakeScorer(members, combine="max", device="cpu", dtype="float32")
    want = expected.score_images(photo_paths)["fake_prob"]
    by_path = dict(zip(dataset.values("filepath"), dataset.values("fake_prob"), strict=True))
    np.testing.assert_allclose([by_path[p] for p in photo_paths], want, atol=1e-6)


def test_the_form_refuses_what_an_ensemble_cannot_take(dataset, tiny_checkpoint, tmp_path):
    def error(**params) -> str:
        with pytest.raises((ExecutionError, ValueError)) as info:
            foo.execute_operator(DETECT, {"dataset": dataset, "params": params})
        return str(info.value)

    pair = f"{tiny_checkpoint}, {tmp_path / 'nowhere'}"
    assert f"There is no folder {tmp_path / 'nowhere'} on the server" in error(model=pair)
    assert "Revision pins one model" in error(
        model=f"{tiny_checkpoint},{tiny_checkpoint}", revision="main"
    )
    assert "belongs to one model" in error(
        model=f"{tiny_checkpoint},{tiny_checkpoint}", head=str(tmp_path)
    )
