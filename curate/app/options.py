"""What the use cases share: the scorer settings and source options their requests extend
(`ScorerSettings`, `SourceSettings`), and the checks run before any work starts (device, dtype,
batch size, label map, the Parquet files a job will write)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from curate.sources import PARQUET_EXTENSIONS

if TYPE_CHECKING:
    from curate.scorer import DeepfakeScorer


class RequestError(ValueError):
    """A request that cannot run as given; the message is one line saying what to change."""


def parse_batch_size(value: int | str) -> int | str:
    """A batch size as given on a command line or in code: a positive integer, or "auto"."""
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) >= 1:
        return int(value)
    raise RequestError(f"--batch-size must be a positive integer or 'auto', got {value!r}")


def check_scoring_options(
    device: str,
    dtype: str,
    batch_size: int | str,
    compile: bool | str = "auto",
    quantize: str | None = None,
) -> int | str:
    """Check `device`, `dtype`, `batch_size`, `compile` and `quantize` now, so that a typo (or
    int8 on a machine that cannot run it) fails before a model loads (this imports torch).
    Returns the batch size parsed (`parse_batch_size`)."""
    from curate.detectors import resolve_device, resolve_dtype
    from curate.pipeline.compile import check_compile
    from curate.pipeline.quantize import check_quantize, int8_problem

    size = parse_batch_size(batch_size)
    try:
        dev = resolve_device(device)
        resolve_dtype(dtype, dev)
        compile = check_compile(compile)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    try:
        quantize = check_quantize(quantize)
    except ValueError:
        raise RequestError(f"--quantize takes int8 (or is left out), got {quantize!r}") from None
    if quantize and compile is False:
        raise RequestError("--quantize int8 only pays compiled: leave --compile at auto")
    problem = int8_problem(dev) if quantize else None
    if problem:
        raise RequestError(problem)
    return size


REPORT_FILE = "report.json"  # its presence marks a folder that holds a report


def check_report_dir(out_dir: str | os.PathLike, overwrite: bool) -> str:
    """`--out-dir` as a string, if a report can be written there: not a file, and not a folder
    that holds a report already (unless `overwrite`)."""
    name = os.fspath(out_dir)
    if os.path.exists(name) and not os.path.isdir(name):
        raise RequestError(f"--out-dir {name} is a file; name a folder for the report")
    if os.path.exists(os.path.join(name, REPORT_FILE)) and not overwrite:
        raise RequestError(f"{name} already holds a report (pass --overwrite to replace it)")
    return name


def check_parquet_output(path: str | os.PathLike, option: str = "-o/--output") -> str:
    """`path` as a string, if a job can write a Parquet file there: a `.parquet` (or `.pq`)
    name, not a folder, in a folder that exists. `option` names the path in the error."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise RequestError(f"{option} {name} is a folder; name a Parquet file in it")
    if not name.lower().endswith(PARQUET_EXTENSIONS):
        raise RequestError(
            f"{option} {name}: curate writes Parquet files; name it with a .parquet extension"
        )
    folder = os.path.dirname(name) or "."
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise RequestError(f"{option} {name}: the folder {folder} {what}; create it first")
    return name


@dataclass(frozen=True, kw_only=True)
class ScorerSettings:
    """The options that build a `DeepfakeScorer`, shared by the requests that score images
    (`curate score`, `curate eval`, `curate adapt`). Several `model`s score as an ensemble
    combined by `combine`; `head` is an adapted head (`curate adapt`) for one model;
    `synthetic_labels` names the checkpoint's synthetic classes; `compile` and `quantize` are
    `DeepfakeScorer`'s (compiled graphs, int8). Keyword-only, so a request
    that extends it keeps its own positional fields first."""

    model: str | tuple[str, ...] | None = None
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | str = 16
    combine: str = "mean"
    head: str | os.PathLike | None = None
    synthetic_labels: str | None = None
    compile: bool | str = "auto"
    quantize: str | None = None

    def scorer_settings(self) -> ScorerSettings:
        """These settings alone, without the request they came with."""
        return ScorerSettings(**{f.name: getattr(self, f.name) for f in fields(ScorerSettings)})

    def check_scoring(self) -> int | str:
        """`check_scoring_options` of these settings: the batch size parsed."""
        return check_scoring_options(
            self.device, self.dtype, self.batch_size, self.compile, self.quantize
        )

    def scorer_options(self, batch_size: int | str) -> dict[str, Any]:
        """These settings as `DeepfakeScorer` keyword arguments (`batch_size` as checked)."""
        return dict(
            model=self.model,
            revision=self.revision,
            device=self.device,
            dtype=self.dtype,
            batch_size=batch_size,
            combine=self.combine,
            head=os.fspath(self.head) if self.head else None,
            synthetic_labels=self.synthetic_labels,
            compile=self.compile,
            quantize=self.quantize,
        )

    def scorer(self, batch_size: int | str, image_column: str, **extra: Any) -> DeepfakeScorer:
        """A scorer with these settings; `extra` are further `DeepfakeScorer` options."""
        from curate.scorer import DeepfakeScorer

        return DeepfakeScorer(**self.scorer_options(batch_size), image_column=image_column, **extra)


@dataclass(frozen=True, kw_only=True)
class SourceSettings:
    """How a source is read: its image column, split (of a DatasetDict or Hub dataset) and
    how many of its rows (`limit`: the first N)."""

    image_column: str | None = None
    split: str | None = None
    limit: int | None = None


def check_label_map(
    label_map: str | Mapping[str, str] | Iterable[str] | None,
) -> dict[str, str] | None:
    """`--label-map` parsed (`curate.evaluation.labels.parse_label_map`), or a RequestError."""
    from curate.evaluation.labels import parse_label_map

    try:
        return parse_label_map(label_map) if label_map else None
    except ValueError as exc:
        raise RequestError(f"--label-map: {exc}") from None
