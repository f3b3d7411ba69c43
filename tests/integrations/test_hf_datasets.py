"""`ds.map(scorer, batched=True)`: unreadable rows anywhere, any batch size, typed columns.

`datasets` fixes a column's Arrow type from the first batch it writes; a column that is all
null there would be typed `null` and reject the first real value after it. The scorer's
columns carry their contract types (`curate.schema.TypedColumn`), so these must all finish.
"""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
from PIL import Image

from curate import DeepfakeScorer, schema
from curate.integrations.hf_datasets import score_dataset

CONTRACT = {
    "fake_prob": datasets.Value("float32"),
    "real_prob": datasets.Value("float32"),
    "deepfake_label": datasets.Value("string"),
    "deepfake_error": datasets.Value("string"),
}
BROKEN = {"bytes": b"not an image at all", "path": "broken.jpg"}


def _png(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return {"bytes": buf.getvalue(), "path": f"{seed}.png"}


def _dataset(n: int, broken_at: set[int]) -> datasets.Dataset:
    rows = [BROKEN if i in broken_at else _png(i % 17) for i in range(n)]
    features = datasets.Features(
        {"image": datasets.Image(decode=False), "i": datasets.Value("int32")}
    )
    return datasets.Dataset.from_dict({"image": rows, "i": list(range(n))}, features=features)


def _check(out: datasets.Dataset, n: int, broken_at: set[int]) -> None:
    for name, feature in CONTRACT.items():
        assert out.features[name] == feature, (name, out.features[name])
    table = out.data.table
    assert table.schema.field("fake_prob").type == schema.arrow_type("fake_prob")
    assert len(out) == n and out["i"] == list(range(n))
    errors = out["deepfake_error"]
    probs = out["fake_prob"]
    for i in range(n):
        if i in broken_at:
            assert errors[i] and probs[i] is None and out[i]["deepfake_label"] is None
        else:
            assert errors[i] is None and 0.0 <= probs[i] <= 1.0
            assert out[i]["deepfake_label"] == schema.label_for(probs[i])


@pytest.fixture(scope="module")
def scorer(tiny_checkpoint):
    return DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32", batch_size=8)


@pytest.mark.parametrize(
    "n, broken_at, batch_size",
    [
        (9, {0}, 2),  # first row
        (9, {8}, 2),  # last row
        (9, {3, 4, 5}, 3),  # a whole batch, not the first
        (9, {0, 1, 2}, 3),  # the whole first batch
        (9, set(), 4),  # none: columns still typed
        (6, set(range(6)), 4),  # all
        (7, {6}, 1),  # batch size 1
        (1003, {1001}, None),  # after the first 1,000-row default batch
    ],
)
def test_map_survives_unreadable_rows_anywhere(scorer, n, broken_at, batch_size):
    ds = _dataset(n, broken_at)
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    out = ds.map(scorer, batched=True, load_from_cache_file=False, **kwargs)
    _check(out, n, broken_at)


def test_map_with_num_proc(scorer):
    broken_at = {0, 5, 11}
    out = _dataset(12, broken_at).map(
        scorer, batched=True, batch_size=2, num_proc=2, load_from_cache_file=False
    )
    _check(out, 12, broken_at)


def test_score_dataset_types_match_plain_map(scorer):
    broken_at = {2}
    ds = _dataset(5, broken_at)
    out = score_dataset(ds, scorer)
    _check(out, 5, broken_at)
    plain = ds.map(scorer, batched=True, batch_size=2, load_from_cache_file=False)
    assert out.features == plain.features
    a, b = list(out["fake_prob"]), list(plain["fake_prob"])
    assert [p is None for p in a] == [p is None for p in b] == [i in broken_at for i in range(5)]
    np.testing.assert_allclose(
        [p for p in a if p is not None], [p for p in b if p is not None], atol=1e-6
    )
