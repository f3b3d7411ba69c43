"""`curate.app.score`: the scoring use case every front end calls, run on real files."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from curate import DeepfakeScorer, schema
from curate.app.options import RequestError
from curate.app.progress import Progress
from curate.app.score import ScoreRequest, score


class Recorder(Progress):
    """Keeps what the use case reports, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def wait(self, description: str) -> None:
        self.events.append(("wait", description))

    def start(self, description: str, total: int | None, done: int = 0) -> None:
        self.events.append(("start", description, total, done))

    def advance(self, rows: int) -> None:
        self.events.append(("advance", rows))


@pytest.fixture
def mixed_folder(image_folder, broken_images):
    shutil.copy(broken_images["truncated"], image_folder / "zz-truncated.jpg")
    return image_folder  # 5 photos and one unreadable file


def test_score_folder_counts_what_the_file_holds(mixed_folder, tmp_path, tiny_checkpoint):
    out = tmp_path / "scored.parquet"
    progress = Recorder()
    request = ScoreRequest(
        mixed_folder, out, model=tiny_checkpoint, dtype="float32", batch_size="2"
    )
    result = score(request, progress)

    table = pq.read_table(out)
    labels = table.column(schema.LABEL).to_pylist()
    assert result.output == str(out) and result.source_kind == "folder"
    assert result.engine == "local" and result.first is None and result.provenance is None
    assert (result.rows, result.resumed_rows, result.scored_rows) == (6, 0, 6)
    assert (result.fake, result.real) == (labels.count("Fake"), labels.count("Real"))
    assert result.fake + result.real == 5 and result.unreadable == 1
    assert result.images_per_second is not None and result.images_per_second > 0

    kinds = [e[0] for e in progress.events]
    assert kinds[0] == "wait" and tiny_checkpoint in progress.events[0][1]  # loading the model
    assert progress.events[1] == ("start", "Scoring", 6, 0)
    assert set(kinds[2:]) == {"advance"}
    assert sum(e[1] for e in progress.events[2:]) == 6


def test_single_image_without_output(photo_paths, tiny_checkpoint):
    result = score(ScoreRequest(photo_paths[1], model=tiny_checkpoint, dtype="float32"))
    expected = DeepfakeScorer(model=tiny_checkpoint, dtype="float32").score_images([photo_paths[1]])
    assert result.output is None and result.rows == 1 and result.unreadable == 0
    assert result.first[schema.FAKE_PROB] == expected[schema.FAKE_PROB][0]
    assert result.first[schema.LABEL] == expected[schema.LABEL][0]
    assert (result.fake, result.real) == (
        (1, 0) if result.first[schema.LABEL] == "Fake" else (0, 1)
    )


def test_provenance_counts(photo_paths, tmp_path, tiny_checkpoint):
    out = tmp_path / "one.parquet"
    result = score(ScoreRequest(photo_paths[0], out, model=tiny_checkpoint, provenance=True))
    assert result.provenance == {"synthetic": 0, "strong": 0, "captured": 0, "none": 1}
    assert result.first[schema.PROVENANCE] is not None  # a single image: its values come back
    assert schema.PROVENANCE_SYNTHETIC in pq.read_schema(out).names


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"output": "nodir/out.parquet"}, "the folder nodir does not exist"),
        ({"output": "out.csv"}, "writes Parquet files"),
        ({"output": "."}, "is a folder"),
        ({"batch_size": "0"}, "--batch-size must be a positive integer"),
        ({"batch_size": "many"}, "--batch-size must be a positive integer"),
        ({"dtype": "int3"}, "Unknown dtype"),
        ({"device": "tpu9"}, "device"),
        ({"engine": "spark"}, "--engine must be 'local' or 'ray'"),
        ({"output": None}, "is a folder source: pass -o"),
        ({"output": None, "engine": "ray"}, "--engine ray writes a Parquet file"),
        ({"num_gpus": 64}, "--num-gpus 64 but this machine has"),
    ],
)
def test_bad_requests_fail_before_the_model_loads(
    changes, message, image_folder, tmp_path, monkeypatch
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # The model cannot load: a ModelLoadError would mean the request was not checked first.
    request = dict(source=image_folder, output="out.parquet", model=str(tmp_path / "no-model"))
    with pytest.raises(RequestError, match=message):
        score(ScoreRequest(**{**request, **changes}))
    assert list(work.iterdir()) == []
