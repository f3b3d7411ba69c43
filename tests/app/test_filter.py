"""`curate.app.filter`: splitting scored Parquet files, every path checked before writing."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import schema
from curate.app.filter import FilterRequest, filter_scored, sibling
from curate.app.progress import Progress

PROBS = [0.1, 0.35, 0.5, 0.65, 0.9, None]


class Rows(Progress):
    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0

    def start(self, description: str, total: int | None, done: int = 0) -> None:
        assert description == "Filtering"
        self.total, self.done = total, done

    def advance(self, rows: int) -> None:
        self.done += rows


def write_scored(path, probs=PROBS) -> str:
    labels = [None if p is None else schema.label_for(p) for p in probs]
    errors = [None if p is not None else "cannot decode image" for p in probs]
    table = pa.table(
        {
            "id": list(range(len(probs))),
            schema.FAKE_PROB: pa.array(probs, schema.arrow_type(schema.FAKE_PROB)),
            schema.LABEL: pa.array(labels, schema.arrow_type(schema.LABEL)),
            schema.ERROR: pa.array(errors, schema.arrow_type(schema.ERROR)),
        }
    )
    pq.write_table(table, path)
    return str(path)


def ids(path) -> list[int]:
    return pq.read_table(path).column("id").to_pylist()


def test_split_with_review_band_and_default_files(tmp_path):
    scored = write_scored(tmp_path / "scored.parquet")
    kept = tmp_path / "kept.parquet"
    rows = Rows()
    result = filter_scored(
        FilterRequest(scored, kept, review_band=(0.3, 0.7), removed=tmp_path / "removed.parquet"),
        rows,
    )
    assert result.inputs == [scored] and result.kept == str(kept)
    assert result.review == sibling(kept, "review") == str(tmp_path / "kept.review.parquet")
    assert result.unscored == str(tmp_path / "kept.unscored.parquet")
    c = result.counts
    assert (c.keep, c.review, c.remove, c.unscored, c.errored) == (1, 3, 1, 1, 1)
    assert ids(kept) == [0] and ids(result.review) == [1, 2, 3]
    assert ids(result.removed) == [4] and ids(result.unscored) == [5]
    assert (rows.total, rows.done) == (6, 6)


def test_defaults_cut_at_the_label_threshold(tmp_path):
    scored = write_scored(tmp_path / "scored.parquet")
    result = filter_scored(FilterRequest(scored, tmp_path / "k.parquet", unscored="keep"))
    assert result.rule.threshold == schema.LABEL_THRESHOLD
    assert result.removed is None and result.review is None and result.unscored is None
    kept = pq.read_table(tmp_path / "k.parquet").to_pydict()
    assert kept["id"] == [0, 1, 5]  # p = 0.5 is Fake and removed; unscored kept as asked
    assert set(kept[schema.LABEL]) == {"Real", None}
    assert result.counts.remove == 3


def test_a_glob_of_files(tmp_path):
    write_scored(tmp_path / "a.parquet", [0.1, 0.9])
    write_scored(tmp_path / "b.parquet", [0.2, 0.8])
    result = filter_scored(FilterRequest(str(tmp_path / "[ab].parquet"), tmp_path / "k.parquet"))
    assert result.inputs == [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    assert result.counts.keep == 2 and result.counts.remove == 2


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"scored": "nothing-*.parquet"}, "no files match"),
        ({"scored": "missing.parquet"}, "does not exist"),
        ({"scored": "notes.parquet"}, "cannot read notes.parquet as Parquet"),
        ({"scored": "plain.parquet"}, "has no 'fake_prob' column"),
        ({"output": "kept.csv"}, "-o/--output kept.csv: curate writes Parquet"),
        ({"removed": "nodir/removed.parquet"}, "--removed nodir/removed.parquet: the folder"),
        ({"unscored_output": "u.txt"}, "--unscored-output u.txt"),
        ({"review_band": (0.3, 0.7), "review": "r.csv"}, "--review r.csv"),
        ({"threshold": 0.2, "review_band": (0.3, 0.7)}, "inside the review band"),
        ({"unscored": "ignore"}, "unscored must be one of"),
        ({"output": "exists.parquet"}, "exists.parquet already exists"),
        ({"output": "scored.parquet", "overwrite": True}, "cannot be the scored input"),
    ],
)
def test_bad_requests_write_nothing(changes, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_scored(tmp_path / "scored.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "plain.parquet")
    (tmp_path / "notes.parquet").write_text("not Parquet")
    (tmp_path / "exists.parquet").write_bytes(b"old")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    request = {"scored": "scored.parquet", "output": "kept.parquet", **changes}
    with pytest.raises(ValueError, match=message):
        filter_scored(FilterRequest(**request))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
