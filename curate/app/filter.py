"""Splitting scored Parquet into kept / removed / review / unscored files, or a folder of scored
shards into folders of shards (Parquet, or the WebDataset tar shards they were scored from):
`filter_scored(FilterRequest)`, every input and output checked before a row is written."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from curate import schema
from curate.app.options import RequestError, check_parquet_output
from curate.app.progress import Progress

if TYPE_CHECKING:
    from curate.filtering import DecisionRule, FilterCounts


@dataclass(frozen=True)
class FilterRequest:
    """Which scored file(s) to split, by which rule, into which files (`curate filter`).

    `scored` is a Parquet file, a glob of them, or a list. Review rows (with a `review_band`
    or `review_conflicts`) go to `review`, set-apart unscored rows to `unscored_output`; both
    default to files beside `output` (`KEPT.review.parquet`, `KEPT.unscored.parquet`).
    Removed rows are only counted unless `removed` names a file.

    `scored` a folder of scored shards (`curate score SHARDS -o FOLDER`): the outputs are
    folders, one shard per scored shard in each; `format="webdataset"` writes tar shards with
    the samples of the shards they were scored from, every member byte-identical."""

    scored: str | os.PathLike | Sequence[str | os.PathLike]
    output: str | os.PathLike
    threshold: float = schema.LABEL_THRESHOLD
    review_band: tuple[float, float] | None = None
    unscored: str = "separate"
    removed: str | os.PathLike | None = None
    review: str | os.PathLike | None = None
    unscored_output: str | os.PathLike | None = None
    overwrite: bool = False
    remove_strong_evidence: bool = False
    review_conflicts: bool = False
    format: str = "parquet"


FORMATS = ("parquet", "webdataset")


@dataclass(frozen=True)
class FilteredParquet:
    """The files a filter job wrote and how many rows went to each."""

    rule: DecisionRule
    inputs: list[str]
    counts: FilterCounts  # keep + remove + review + unscored == every input row
    kept: str
    removed: str | None  # None: removed rows were only counted
    review: str | None  # None: the rule sends nothing to review
    unscored: str | None  # None: unscored rows were kept or dropped, not set apart
    shards: int | None = None  # a folder of shards: how many; the outputs are folders


def sibling(kept: str | os.PathLike, role: str) -> str:
    """`kept.parquet` -> `kept.<role>.parquet`, beside it (default review/unscored files)."""
    root, ext = os.path.splitext(os.fspath(kept))
    return f"{root}.{role}{ext}"


def filter_scored(request: FilterRequest, progress: Progress | None = None) -> FilteredParquet:
    """Split the scored file(s) as `request` asks; `progress` hears the rows as they go.

    Raises `RequestError` (a `ValueError`) for inputs or outputs that cannot work, before any
    file is written."""
    from curate.filtering import DecisionRule, filter_parquet

    progress = progress or Progress()
    if request.format not in FORMATS:
        raise RequestError(f"--format must be parquet or webdataset, got {request.format!r}")
    sharded = isinstance(request.scored, (str, os.PathLike)) and os.path.isdir(request.scored)
    if request.format != "parquet" and not sharded:
        raise RequestError(
            "--format webdataset filters a folder of scored shards (curate score SHARDS -o FOLDER)"
        )
    inputs = [] if sharded else scored_paths(request.scored)
    try:
        rule = DecisionRule(
            threshold=request.threshold,
            review_band=tuple(request.review_band) if request.review_band else None,
            unscored=request.unscored,
            remove_strong_evidence=request.remove_strong_evidence,
            review_conflicts=request.review_conflicts,
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    if sharded:
        return _filter_shards(request, rule, progress)
    kept = check_parquet_output(request.output)
    removed = _output(request.removed, "--removed")
    review = unscored = None
    if rule.can_review:
        review = _output(request.review or sibling(kept, "review"), "--review")
    if rule.unscored == "separate":
        unscored = _output(
            request.unscored_output or sibling(kept, "unscored"), "--unscored-output"
        )
    if not request.overwrite:
        for path in (kept, removed, review, unscored):
            if path is not None and os.path.exists(path):
                raise RequestError(f"{path} already exists (pass --overwrite to replace it)")
    total = _row_count(inputs)
    progress.start("Filtering", total=total)
    counts = filter_parquet(
        inputs,
        kept,
        rule,
        removed=removed,
        review=review,
        unscored=unscored,
        overwrite=request.overwrite,
        progress=progress.advance,
    )
    if counts.total != total:  # filter_parquet decides every row; a mismatch is a bug
        raise RuntimeError(f"decided {counts.total} rows of {total}")
    return FilteredParquet(rule, inputs, counts, kept, removed, review, unscored)


def scored_paths(scored: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The scored Parquet files `scored` names (a glob is expanded, sorted), each checked to
    be a readable Parquet file with a `fake_prob` column."""
    import pyarrow.parquet as pq

    if isinstance(scored, (str, os.PathLike)):
        pattern = os.fspath(scored)
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not paths:
            raise RequestError(f"no files match {pattern!r}")
    else:
        paths = [os.fspath(p) for p in scored]
        if not paths:
            raise RequestError("no scored Parquet files given")
    for path in paths:
        if not os.path.isfile(path):
            raise RequestError(f"{path} does not exist or is not a file")
        try:
            names = pq.read_schema(path).names
        except Exception as exc:
            raise RequestError(f"cannot read {path} as Parquet: {exc}") from None
        if schema.FAKE_PROB not in names:
            raise RequestError(
                f"{path} has no {schema.FAKE_PROB!r} column (columns: {', '.join(names)}); "
                "score it first with `curate score`"
            )
    return paths


def _output(path: str | os.PathLike | None, option: str) -> str | None:
    return None if path is None else check_parquet_output(path, option)


def _row_count(paths: list[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def scored_shards(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """`(name, path)` of each scored Parquet shard in `folder` (recursive; names relative to
    it, `/`-separated; working folders and hidden files skipped), each checked as
    `scored_paths` does."""
    folder = os.fspath(folder)
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".work"))
        found += [os.path.join(root, n) for n in files if n.endswith(".parquet") and n[0] != "."]
    if not found:
        raise RequestError(f"{folder} holds no scored Parquet shards")
    paths = scored_paths(sorted(found))
    return [(os.path.relpath(p, folder).replace(os.sep, "/"), p) for p in paths]


def _folder(path: str | os.PathLike, option: str) -> str:
    name = os.fspath(path)
    if os.path.exists(name) and not os.path.isdir(name):
        raise RequestError(f"{option} {name} is a file; name a folder for the output shards")
    parent = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(parent):
        raise RequestError(f"{option} {name}: the folder {parent} does not exist; create it first")
    return name


def _filter_shards(
    request: FilterRequest, rule: DecisionRule, progress: Progress
) -> FilteredParquet:
    from curate.filtering import KEEP, REMOVE, REVIEW, UNSCORED, filter_shards
    from curate.io.webdataset import TAR_EXTENSIONS

    shards = scored_shards(request.scored)
    kept = _folder(request.output, "-o/--output")
    folders = {KEEP: kept}
    if request.removed is not None:
        folders[REMOVE] = _folder(request.removed, "--removed")
    if rule.can_review:
        folders[REVIEW] = _folder(request.review or sibling(kept, "review"), "--review")
    if rule.unscored == "separate":
        folders[UNSCORED] = _folder(
            request.unscored_output or sibling(kept, "unscored"), "--unscored-output"
        )
    named = [os.path.abspath(f) for f in folders.values()]
    if len(set(named)) != len(named):
        raise RequestError("the kept, removed, review and unscored folders must be different")
    if os.path.abspath(os.fspath(request.scored)) in named:
        raise RequestError("an output folder cannot be the scored folder")
    if not request.overwrite:
        exts = (".parquet",) if request.format == "parquet" else TAR_EXTENSIONS
        for folder in folders.values():
            for name, _ in shards:
                stem = os.path.join(folder, os.path.splitext(name)[0])
                if any(os.path.exists(stem + ext) for ext in exts):
                    raise RequestError(
                        f"{folder} already holds the shard {os.path.basename(stem)} (pass "
                        "--overwrite to replace it)"
                    )
    paths = [p for _, p in shards]
    total = _row_count(paths)
    progress.start(f"Filtering {len(shards)} shards", total=total)
    try:
        counts = filter_shards(
            shards,
            folders,
            rule,
            format=request.format,
            overwrite=request.overwrite,
            progress=progress.advance,
        )
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return FilteredParquet(
        rule,
        paths,
        counts,
        kept,
        folders.get(REMOVE),
        folders.get(REVIEW),
        folders.get(UNSCORED),
        shards=len(shards),
    )
