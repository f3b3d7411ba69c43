"""Scoring a source into one Parquet file, a source made of shards into a folder of output
shards, or one image's scores: `score(ScoreRequest)`.

Every option is checked before the model loads; the job runs locally (resumable,
`curate.runs.ScoringRun`) or on Ray (`curate.integrations.ray.score_files`), and the result
holds the counts a front end shows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curate import schema
from curate.app.options import (
    RequestError,
    ScorerSettings,
    SourceSettings,
    check_parquet_output,
)
from curate.app.progress import Progress

if TYPE_CHECKING:
    from curate.sources import Source

ENGINES = ("local", "ray")
# Sources made of shards: scored into a folder (`-o FOLDER`), one output shard per input shard.
SHARDED_KINDS = ("webdataset", "parquet")


@dataclass(frozen=True)
class ScoreRequest(ScorerSettings, SourceSettings):
    """What to score, where to write it, and how (the options of `curate score`; the scorer's
    and the source's are `ScorerSettings` and `SourceSettings`, keyword-only).

    `output` None scores a single image without writing a file (its scores are in the
    result's `first`). `engine="ray"`, or `num_gpus` above 1, runs on Ray Data: one model
    copy per GPU, on a local cluster or the one at `address`."""

    source: str | os.PathLike
    output: str | os.PathLike | None = None
    config: str | None = None
    overwrite: bool = False
    draft: bool = False
    calibration: str | os.PathLike | None = None
    chunk_rows: int = 256
    provenance: bool = False
    watermark: bool = False
    trust_anchors: str | os.PathLike | None = None
    engine: str = "local"
    address: str | None = None
    num_gpus: int | None = None
    image_member: str | None = None  # WebDataset shards: the image member's extension(s)

    @property
    def on_ray(self) -> bool:
        return self.engine == "ray" or (self.num_gpus or 0) > 1


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring job did: the file it wrote and what its rows hold."""

    source: str
    source_kind: str  # "image", "folder", "parquet", "dataset" or "hub"
    output: str | None  # None: a single image scored without writing a file
    engine: str
    rows: int  # rows in the output
    resumed_rows: int  # of them, scored by an earlier, interrupted run
    seconds: float  # time spent scoring (model loading excluded on the local engine)
    fake: int
    real: int
    unreadable: int
    provenance: Mapping[str, int] | None = None  # `curate.provenance.evidence_counts`
    first: Mapping[str, Any] | None = None  # a single image's score (and provenance) values
    shards: int | None = None  # a source made of shards scored into a folder: how many

    @property
    def scored_rows(self) -> int:
        """Rows scored by this job (not resumed)."""
        return self.rows - self.resumed_rows

    @property
    def images_per_second(self) -> float | None:
        if self.seconds <= 0 or not self.scored_rows:
            return None
        return self.scored_rows / self.seconds


class ScoreInterrupted(KeyboardInterrupt):
    """Scoring was interrupted; the finished chunks wait in `work_dir` for a re-run."""

    def __init__(self, work_dir: str) -> None:
        super().__init__(work_dir)
        self.work_dir = work_dir


@dataclass(frozen=True)
class _Checked:
    source: Source
    output: str | None
    batch_size: int | str
    provenance: Any  # a `curate.provenance.ProvenanceChecker`, or None
    folder: bool = False  # output is a folder: one output shard per input shard


def score(request: ScoreRequest, progress: Progress | None = None) -> ScoreResult:
    """Score `request.source` as `request` asks; `progress` hears the steps and rows.

    Raises `RequestError` (a `ValueError`) for options that cannot work, before any model
    loads; `ScoreInterrupted` when interrupted during a local run."""
    progress = progress or Progress()
    checked = _check(request)
    if request.on_ray:
        return _score_on_ray(request, checked, progress)
    from curate.pipeline.compile import compile_notices

    # A long run compiles its model once, after a minute or so: the user hears why it pauses.
    with compile_notices(progress.note):
        return _score_locally(request, checked, progress)


def _check(request: ScoreRequest) -> _Checked:
    """Everything that can be wrong with the request, found before any model loads."""
    from curate.provenance import checker_from_options
    from curate.sources import resolve_source

    if request.engine not in ENGINES:
        raise RequestError(f"--engine must be 'local' or 'ray', got {request.engine!r}")
    folder = request.output is not None and names_a_folder(request.output)
    output = None
    if request.output is not None and not folder:
        output = check_parquet_output(request.output)
    batch_size = request.check_scoring()
    source = os.fspath(request.source)
    src = resolve_source(
        source,
        image_column=request.image_column,
        split=request.split,
        limit=request.limit,
        config=request.config,
        image_member=request.image_member,
    )
    if request.image_member is not None and src.kind != "webdataset":
        raise RequestError(f"--image-member is for WebDataset shards; {source} is a {src.kind}")
    if folder:
        output = _check_folder_output(request, src)
    if output is None and request.on_ray:
        raise RequestError("--engine ray writes a Parquet file: pass -o OUT.parquet")
    if output is None and src.kind != "image":
        raise RequestError(f"{source} is a {src.kind} source: pass -o OUT.parquet")
    if request.on_ray:
        _check_ray(request, src, folder)
    checker = checker_from_options(request.provenance, request.watermark, request.trust_anchors)
    return _Checked(src, output, batch_size, checker, folder)


def names_a_folder(path: str | os.PathLike) -> bool:
    """Whether `-o PATH` asks for a folder of output shards: an existing folder, or a name
    with no extension (`scored`, `scored/`)."""
    name = os.fspath(path)
    return os.path.isdir(name) or not os.path.splitext(name.rstrip("/\\"))[1]


def _check_folder_output(request: ScoreRequest, src: Source) -> str:
    """`-o FOLDER`, if the source is made of shards and the folder can be written."""
    name = os.fspath(request.output)
    if src.kind not in SHARDED_KINDS:
        check_parquet_output(name)  # its own error: a folder where a file is wanted
        raise RequestError(f"-o/--output {name}: name a .parquet file")
    if request.limit is not None:
        raise RequestError("--limit applies to a single output file: pass -o OUT.parquet")
    if os.path.exists(name) and not os.path.isdir(name):
        raise RequestError(f"-o/--output {name} is a file; name a folder for the output shards")
    parent = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(parent):
        raise RequestError(
            f"-o/--output {name}: the folder {parent} does not exist; create it first"
        )
    return name


def _check_ray(request: ScoreRequest, src: Source, folder: bool = False) -> None:
    if src.kind == "webdataset" and not folder:
        raise RequestError("--engine ray scores WebDataset shards into a folder: pass -o FOLDER")
    if src.num_rows is None and not folder:
        raise RequestError(
            f"--engine ray needs a source that says how many rows it has; "
            f"{os.fspath(request.source)} is streamed (use --engine local)"
        )
    if request.num_gpus and request.address is None:
        import torch

        have = torch.cuda.device_count()
        if have < request.num_gpus:
            raise RequestError(
                f"--num-gpus {request.num_gpus} but this machine has {have} CUDA GPU(s)"
            )


def _scorer_options(request: ScoreRequest, checked: _Checked) -> dict[str, Any]:
    """The `DeepfakeScorer` options of a request, as the local and the Ray engines take them."""
    return dict(
        **request.scorer_options(checked.batch_size),
        draft=request.draft,
        calibration=os.fspath(request.calibration) if request.calibration else None,
        provenance=checked.provenance,
    )


def _scorer(request: ScoreRequest, checked: _Checked):
    from curate.scorer import DeepfakeScorer

    return DeepfakeScorer(
        image_column=checked.source.image_column, **_scorer_options(request, checked)
    )


def _score_locally(request: ScoreRequest, checked: _Checked, progress: Progress) -> ScoreResult:
    from curate.runs import ScoringRun, work_dir_for

    src, output = checked.source, checked.output
    scorer = _scorer(request, checked)
    if output is None:  # one image, no file: its scores only
        progress.wait(f"Loading {', '.join(scorer.members)}")
        scorer.load()
        started = time.perf_counter()
        batch = next(src.batches(1))
        scores = scorer.score_images(batch[src.image_column])
        first = {name: values[0] for name, values in scores.items()}
        return _result(request, src, None, time.perf_counter() - started, 0, first)
    if checked.folder:
        return _score_shards_locally(request, checked, scorer, progress)
    run = ScoringRun(
        src, scorer, output, overwrite=request.overwrite, chunk_rows=request.chunk_rows
    )
    if run.resumed_rows:
        progress.note(f"Resuming: {run.resumed_rows} rows already scored in {work_dir_for(output)}")
    progress.wait(f"Loading {', '.join(scorer.members)}")
    scorer.load()
    progress.start("Scoring", total=src.num_rows, done=run.resumed_rows)
    started = time.perf_counter()
    try:
        run.run(progress=progress.advance)
    except KeyboardInterrupt:
        raise ScoreInterrupted(work_dir_for(output)) from None
    seconds = time.perf_counter() - started
    first = _first_row(output, src.image_column) if src.kind == "image" else None
    return _result(request, src, output, seconds, run.resumed_rows, first)


def _score_shards_locally(
    request: ScoreRequest, checked: _Checked, scorer: Any, progress: Progress
) -> ScoreResult:
    from curate.runs import ShardedScoringRun

    src, output = checked.source, checked.output
    run = ShardedScoringRun(
        src, scorer, output, overwrite=request.overwrite, chunk_rows=request.chunk_rows
    )
    total = len(run.names)
    if run.done:
        progress.note(f"Resuming: {len(run.done)} of {total} shards already scored in {output}")
    progress.wait(f"Loading {', '.join(scorer.members)}")
    scorer.load()
    progress.start(f"Scoring {total} shards", total=src.num_rows, done=run.resumed_rows)
    progress.shard_done(len(run.done), total)
    started = time.perf_counter()
    try:
        run.run(
            progress=progress.advance,
            shard_done=lambda name, rows, done, total: progress.shard_done(done, total),
        )
    except KeyboardInterrupt:
        raise ScoreInterrupted(output) from None
    seconds = time.perf_counter() - started
    files = _shard_files(output)
    return _result(request, src, output, seconds, run.resumed_rows, None, files)


def _score_on_ray(request: ScoreRequest, checked: _Checked, progress: Progress) -> ScoreResult:
    from curate.integrations.ray import score_files, score_shards

    src = checked.source
    progress.wait(f"Scoring with Ray ({request.address or 'local cluster'})")
    started = time.perf_counter()
    # Ray reads the source resolved (and limited) once, here: the rows a local run would.
    engine = dict(
        address=request.address,
        num_gpus=1 if request.num_gpus else None,
        concurrency=request.num_gpus,
        overwrite=request.overwrite,
        **_scorer_options(request, checked),
    )
    if checked.folder:
        score_shards(src, checked.output, **engine)
        files = _shard_files(checked.output)
        seconds = time.perf_counter() - started
        return _result(request, src, checked.output, seconds, 0, None, files)
    score_files(src, checked.output, **engine)
    return _result(request, src, checked.output, time.perf_counter() - started, 0, None)


def _first_row(output: str, image_column: str) -> dict[str, Any]:
    """The score (and provenance) values of a file's first row."""
    import pyarrow.parquet as pq

    names = [c for c in pq.read_schema(output).names if c != image_column]
    return {c: v[0] for c, v in pq.read_table(output, columns=names).to_pydict().items()}


def _result(
    request: ScoreRequest,
    src: Source,
    output: str | None,
    seconds: float,
    resumed: int,
    first: Mapping[str, Any] | None,
    files: list[str] | None = None,
) -> ScoreResult:
    """The counts of what was scored: read back from the output file (or the output shards,
    `files`), or from the one row."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = (schema.LABEL, schema.ERROR, schema.PROVENANCE_SYNTHETIC, schema.PROVENANCE_STRONG)
    if output is None:
        table = pa.table(
            {c: pa.array([first[c]], schema.arrow_type(c)) for c in wanted if c in first}
        )
    else:
        names = pq.read_schema((files or [output])[0]).names
        table = pq.read_table(files or output, columns=[c for c in wanted if c in names])
    labels = table.column(schema.LABEL)
    evidence = None
    if schema.PROVENANCE_SYNTHETIC in table.column_names:
        from curate.provenance import evidence_counts

        evidence = evidence_counts(
            table.column(schema.PROVENANCE_SYNTHETIC).to_pylist(),
            table.column(schema.PROVENANCE_STRONG).to_pylist(),
        )
    return ScoreResult(
        source=os.fspath(request.source),
        source_kind=src.kind,
        output=output,
        engine="ray" if request.on_ray else "local",
        rows=table.num_rows,
        resumed_rows=resumed,
        seconds=seconds,
        fake=int(pc.sum(pc.equal(labels, schema.FAKE)).as_py() or 0),
        real=int(pc.sum(pc.equal(labels, schema.REAL)).as_py() or 0),
        unreadable=table.num_rows - table.column(schema.ERROR).null_count,
        provenance=evidence,
        first=first,
        shards=None if files is None else len(files),
    )


def _shard_files(folder: str) -> list[str]:
    """The output shards a sharded job wrote into `folder`, from its manifest."""
    import json

    from curate.runs import SHARDS_MANIFEST

    with open(os.path.join(folder, SHARDS_MANIFEST), encoding="utf-8") as f:
        return [os.path.join(folder, name) for name, _ in json.load(f)["shards"]]
