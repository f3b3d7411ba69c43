"""One column contract: datasets, Parquet, Ray and FiftyOne outputs of one run agree.

The same images, with an unreadable one among them, scored with logits and provenance on, go
through each front end; every output carries the same curate columns with the types
`curate.schema` gives them, and the same values.
"""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import DeepfakeScorer, schema
from curate.runs import ScoringRun
from curate.sources import resolve_source


@pytest.fixture(scope="module")
def scorer(tiny_checkpoint):
    return DeepfakeScorer(
        tiny_checkpoint,
        device="cpu",
        dtype="float32",
        batch_size=4,
        with_logits=True,
        provenance=True,
    )


@pytest.fixture
def folder(image_folder):
    (image_folder / "zz-broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return image_folder


def _rows(table: pa.Table, columns) -> dict[str, list]:
    return {c: table.column(c).to_pylist() for c in columns}


def _same(a: dict[str, list], b: dict[str, list]) -> None:
    assert a.keys() == b.keys()
    for c in a:
        if schema.COLUMN_TYPES.get(c) == "float32":
            x, y = a[c], b[c]
            assert [v is None for v in x] == [v is None for v in y], c
            np.testing.assert_allclose(
                [v for v in x if v is not None], [v for v in y if v is not None], atol=1e-6
            )
        elif c == schema.ERROR:  # each front end names the file as it was given
            assert [v is None for v in a[c]] == [v is None for v in b[c]]
        else:
            assert a[c] == b[c], c


def test_every_front_end_writes_the_contract(scorer, folder, tmp_path):
    columns = scorer.columns
    assert set(schema.SCORE_COLUMNS) <= set(columns)
    assert set(schema.LOGIT_COLUMNS) <= set(columns)
    assert set(schema.PROVENANCE_COLUMNS) <= set(columns)
    want_arrow = {c: schema.arrow_type(c) for c in columns}
    want_features = schema.datasets_features(columns)

    # Parquet, through the resumable job `curate score` runs.
    out = tmp_path / "scored.parquet"
    src = resolve_source(folder)
    ScoringRun(src, scorer, out).run()
    parquet = pq.read_table(out)
    assert {c: parquet.schema.field(c).type for c in columns} == want_arrow
    expected = _rows(parquet, columns)
    assert expected[schema.ERROR][-1] and expected[schema.FAKE_PROB][-1] is None

    # datasets: the plain map idiom, on the same files in the same order.
    paths = [str(folder / r["path"]) for r in parquet.column("image").to_pylist()]
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": p} for p in paths]},
        features=datasets.Features({"image": datasets.Image(decode=False)}),
    )
    mapped = ds.map(scorer, batched=True, batch_size=3, load_from_cache_file=False)
    assert {c: mapped.features[c] for c in columns} == dict(want_features)
    _same(_rows(mapped.data.table, columns), expected)

    # Ray Data.
    ray = pytest.importorskip("ray")
    from curate.integrations.ray import score_ray_dataset

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rds = ray.data.from_items([{"image": {"bytes": None, "path": p}} for p in paths])
    scored = score_ray_dataset(rds, scorer, concurrency=1, batch_size=8).to_arrow_refs()
    ray_table = pa.concat_tables(ray.get(scored))
    assert {c: ray_table.schema.field(c).type for c in columns} == want_arrow
    _same(_rows(ray_table, columns), expected)

    # FiftyOne: a float field for fake_prob, a Classification, a string error field.
    fo = pytest.importorskip("fiftyone")
    from curate.integrations import fiftyone as cfo

    dataset = fo.Dataset()
    try:
        dataset.add_samples([fo.Sample(filepath=p) for p in paths])
        cfo.score_samples(dataset, scorer)
        fields = dataset.get_field_schema()
        assert isinstance(fields[schema.FAKE_PROB], fo.FloatField)
        assert isinstance(fields[schema.ERROR], fo.StringField)
        assert fields["deepfake"].document_type is fo.Classification
        by_path = {s.filepath: s for s in dataset}
        got = {
            schema.FAKE_PROB: [by_path[p][schema.FAKE_PROB] for p in paths],
            schema.ERROR: [by_path[p][schema.ERROR] for p in paths],
            schema.LABEL: [
                by_path[p]["deepfake"].label if by_path[p]["deepfake"] else None for p in paths
            ],
        }
        _same(got, {c: expected[c] for c in got})
    finally:
        dataset.delete()
