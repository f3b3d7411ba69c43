"""DecisionRule semantics, and filtering real scored datasets and Parquet files with it."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import DeepfakeScorer
from curate.filtering import DecisionRule, filter_parquet, filter_synthetic, outcome_counts
from curate.io.parquet import curate_metadata as read_metadata
from curate.io.parquet import write_parquet

GRID = [0.0, 0.1, 0.29999, 0.3, 0.30001, 0.5, 0.6999, 0.7, 0.9, 1.0, None, math.nan]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": 1.5}, "threshold must be a number in \\[0, 1\\]"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": "0.5"}, "threshold"),
        ({"review_band": (0.7, 0.3)}, "0 <= lo < hi <= 1"),
        ({"review_band": (0.3, 0.3)}, "0 <= lo < hi <= 1"),
        ({"review_band": (0.3, 1.2)}, "0 <= lo < hi <= 1"),
        ({"review_band": (0.1,)}, "two numbers"),
        ({"threshold": 0.2, "review_band": (0.3, 0.7)}, "inside the review band"),
        ({"unscored": "ignore"}, "unscored must be one of keep, drop, separate"),
    ],
)
def test_rule_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecisionRule(**kwargs)


def test_rule_is_frozen_and_normalised():
    rule = DecisionRule(threshold=1, review_band=[0, 1])
    assert rule.threshold == 1.0 and rule.review_band == (0.0, 1.0)
    with pytest.raises(AttributeError):
        rule.threshold = 0.3


def test_threshold_boundaries():
    rule = DecisionRule(threshold=0.5)
    assert rule.decide(0.4999) == "keep"
    assert rule.decide(0.5) == "remove"  # keep means strictly below the threshold
    assert rule.decide(np.float32(0.5)) == "remove"
    assert rule.decide(0.0) == "keep" and rule.decide(1.0) == "remove"
    assert DecisionRule(threshold=0.0).decide(0.0) == "remove"
    assert DecisionRule(threshold=1.0).decide(0.999) == "keep"


def test_review_band_boundaries():
    rule = DecisionRule(threshold=0.5, review_band=(0.3, 0.7))
    assert [rule.decide(p) for p in (0.2999, 0.3, 0.5, 0.6999, 0.7, 0.95)] == [
        "keep",
        "review",
        "review",
        "review",
        "remove",
        "remove",
    ]


@pytest.mark.parametrize(
    "unscored, outcome", [("keep", "keep"), ("drop", "remove"), ("separate", "unscored")]
)
def test_unscored_choice(unscored, outcome):
    rule = DecisionRule(unscored=unscored)
    assert rule.decide(None) == outcome
    assert rule.decide(math.nan) == outcome
    assert list(rule.decide_many([None, math.nan])) == [outcome, outcome]


@pytest.mark.parametrize(
    "rule",
    [
        DecisionRule(),
        DecisionRule(threshold=0.3, unscored="keep"),
        DecisionRule(threshold=0.5, review_band=(0.3, 0.7), unscored="drop"),
        DecisionRule(threshold=0.3, review_band=(0.3, 0.7)),
        DecisionRule(threshold=0.0),
        DecisionRule(threshold=1.0),
    ],
    ids=repr,
)
def test_decide_many_agrees_with_decide(rule):
    expected = [rule.decide(p) for p in GRID]
    assert list(rule.decide_many(GRID)) == expected
    as_arrow = pa.array([None if p is None or p != p else p for p in GRID], pa.float32())
    arrow_expected = [
        rule.decide(None if p is None or p != p else float(np.float32(p))) for p in GRID
    ]
    assert list(rule.decide_many(as_arrow)) == arrow_expected
    assert list(rule.decide_many(pa.chunked_array([as_arrow[:4], as_arrow[4:]]))) == arrow_expected
    f32 = np.array([np.nan if p is None else p for p in GRID], dtype=np.float32)
    assert list(rule.decide_many(f32)) == [rule.decide(float(p)) for p in f32]
    assert rule.decide_many([]).shape == (0,)


def test_outcome_counts_lists_every_outcome():
    assert outcome_counts(["keep", "keep", "review"]) == {
        "keep": 2,
        "remove": 0,
        "review": 1,
        "unscored": 0,
    }


@pytest.fixture(scope="module")
def scored_rows(tiny_checkpoint, photo_paths, broken_images):
    """Real scores of the example photos, their mirrored copies and some unreadable files."""
    from PIL import Image, ImageOps

    images = list(photo_paths)
    images += [ImageOps.mirror(Image.open(p).convert("RGB")) for p in photo_paths]
    images += [broken_images["truncated"], broken_images["not_an_image"]]
    scores = DeepfakeScorer(model=tiny_checkpoint, batch_size=4).score_images(images)
    return images, scores


def test_filter_synthetic_on_a_scored_dataset(scored_rows):
    from datasets import Dataset, Features, Value

    images, scores = scored_rows
    probs = scores["fake_prob"]
    assert sum(p is None for p in probs) == 2
    finite = sorted(p for p in probs if p is not None)
    threshold = float(finite[len(finite) // 2])  # a real split: some kept, some removed
    ds = Dataset.from_dict(
        {"idx": list(range(len(images))), **scores},
        features=Features(
            {
                "idx": Value("int64"),
                "fake_prob": Value("float32"),
                "real_prob": Value("float32"),
                "deepfake_label": Value("string"),
                "deepfake_error": Value("string"),
            }
        ),
    )
    result = filter_synthetic(ds, threshold=threshold)
    c = result.counts
    assert c.total == len(ds) == c.keep + c.remove + c.unscored
    assert c.keep > 0 and c.remove > 0 and c.unscored == 2 and c.errored == 2
    assert all(p < threshold for p in result.kept["fake_prob"])
    assert all(p >= threshold for p in result.removed["fake_prob"])
    assert all(e is not None for e in result.unscored["deepfake_error"])
    assert len(result.review) == 0
    seen = sorted([*result.kept["idx"], *result.removed["idx"], *result.unscored["idx"]])
    assert seen == list(range(len(ds)))  # every row exactly once

    kept_all = filter_synthetic(ds, threshold=threshold, unscored="keep")
    assert len(kept_all.kept) == c.keep + 2 and len(kept_all.unscored) == 0
    dropped = filter_synthetic(ds, DecisionRule(threshold=threshold, unscored="drop"))
    assert len(dropped.removed) == c.remove + 2

    # A shuffled dataset (an indices mapping over the same table) is decided row by row.
    shuffled = ds.shuffle(seed=0)
    split = filter_synthetic(shuffled, threshold=threshold)
    assert all(p < threshold for p in split.kept["fake_prob"])
    assert sorted(split.kept["idx"]) == sorted(result.kept["idx"])
    assert sorted(split.unscored["idx"]) == sorted(result.unscored["idx"])

    with pytest.raises(ValueError, match="either rule"):
        filter_synthetic(ds, DecisionRule(), threshold=0.3)
    with pytest.raises(ValueError, match="no 'fake_prob' column"):
        filter_synthetic(ds.remove_columns("fake_prob"))


def test_filter_parquet_writes_every_row_once(scored_rows, tmp_path):
    images, scores = scored_rows
    scored = tmp_path / "scored.parquet"
    write_parquet(
        [{"image": images, "idx": list(range(len(images))), **scores}],
        scored,
        metadata={"curate.model": "tiny"},
    )
    probs = sorted(p for p in scores["fake_prob"] if p is not None)
    rule = DecisionRule(threshold=probs[4], review_band=(probs[2], probs[6]))
    out = {k: tmp_path / f"{k}.parquet" for k in ("kept", "removed", "review", "unscored")}
    counts = filter_parquet(
        scored,
        out["kept"],
        rule,
        removed=out["removed"],
        review=out["review"],
        unscored=out["unscored"],
        batch_size=3,  # several batches, so outcomes interleave across writes
    )
    tables = {k: pq.read_table(p) for k, p in out.items()}
    assert {k: t.num_rows for k, t in tables.items()} == {
        "kept": counts.keep,
        "removed": counts.remove,
        "review": counts.review,
        "unscored": counts.unscored,
    }
    assert counts.total == len(images) and counts.review > 0 and counts.unscored == 2
    idx = sorted(i for t in tables.values() for i in t.column("idx").to_pylist())
    assert idx == list(range(len(images)))
    for outcome, t in zip(("keep", "remove", "review", "unscored"), tables.values(), strict=True):
        assert set(rule.decide_many(t.column("fake_prob"))) <= {outcome}
        meta = read_metadata(out[{"keep": "kept", "remove": "removed"}.get(outcome, outcome)])
        assert meta["curate.outcome"] == outcome
        assert meta["curate.model"] == "tiny"  # the scoring metadata travels on
        assert meta["curate.threshold"] == repr(rule.threshold)
    # Images are carried through untouched.
    original = {r["idx"]: r["image"] for r in pq.read_table(scored).to_pylist()}
    for t in tables.values():
        for r in t.to_pylist():
            assert r["image"] == original[r["idx"]]


def test_filter_parquet_refuses_unsafe_requests(scored_rows, tmp_path):
    images, scores = scored_rows
    scored = tmp_path / "scored.parquet"
    write_parquet([{"image": images[:3], **{k: v[:3] for k, v in scores.items()}}], scored)
    kept = tmp_path / "kept.parquet"
    with pytest.raises(ValueError, match="needs a file for the unscored rows"):
        filter_parquet(scored, kept)
    with pytest.raises(ValueError, match="review band needs a file"):
        filter_parquet(scored, kept, DecisionRule(review_band=(0.2, 0.8), unscored="keep"))
    with pytest.raises(ValueError, match="must be different paths"):
        filter_parquet(scored, kept, DecisionRule(unscored="keep"), removed=kept)
    with pytest.raises(ValueError, match="cannot be the scored input"):
        filter_parquet(scored, scored, DecisionRule(unscored="keep"), overwrite=True)
    kept.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        filter_parquet(scored, kept, DecisionRule(unscored="keep"))
    assert kept.read_bytes() == b"precious"
    unscored_only = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), unscored_only)
    with pytest.raises(ValueError, match="has no 'fake_prob' column"):
        filter_parquet(unscored_only, tmp_path / "k.parquet", DecisionRule(unscored="keep"))
    assert not (tmp_path / "k.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kept.parquet",
        "plain.parquet",
        "scored.parquet",
    ]
