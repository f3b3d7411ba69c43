"""What every `curate` command shares: the options several commands take (each defined once,
as an `Annotated` type), one-line errors with exit codes, progress bars, consoles.

Progress bars and errors go to stderr, results (tables) to stdout. Errors are one line:
exit code 2 for bad arguments or unusable inputs, 1 for failures while running (a model that
cannot load, a disk that fills up), 130 when interrupted. Set CURATE_DEBUG=1 for tracebacks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from curate.app.progress import Progress

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)

# -- options shared by commands (defaults stay with each command) -------------------------------
# The scorer: `curate score`, `curate eval`, `curate adapt` (which takes one --model, its own).
ModelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="Hub id or local directory of the detector (default: $CURATE_MODEL, else "
        "prithivMLmods/open-deepfake-detection). Repeat it to score with an ensemble.",
        show_default=False,
    ),
]
RevisionOption = Annotated[str | None, typer.Option("--revision", help="Model revision to pin.")]
CombineOption = Annotated[
    str,
    typer.Option(
        "--combine",
        help="How an ensemble (several --model) combines its members: mean (of their "
        "probabilities), max, or logit_mean (mean logit gap, then sigmoid).",
    ),
]
HeadOption = Annotated[
    Path | None,
    typer.Option(
        "--head",
        help="Folder of an adapted head (made by `curate adapt` for this --model) to score "
        "with instead of the model's own classifier.",
        file_okay=False,
        show_default=False,
    ),
]
SyntheticLabelsOption = Annotated[
    str | None,
    typer.Option(
        "--synthetic-labels",
        help="The checkpoint's classes that mean synthetic, comma-separated (default: read "
        "from its labels by name).",
        show_default=False,
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="auto (bf16 on GPU and on CPUs with native bf16, else fp32), float32, bfloat16, "
        "float16.",
    ),
]
CompileOption = Annotated[
    str,
    typer.Option(
        "--compile",
        help="auto (on CPU, compile the model once the run's forward passes have taken about "
        "what a first compile costs, a minute: long runs compile once, small ones never), "
        "always, or never.",
    ),
]
QuantizeOption = Annotated[
    str | None,
    typer.Option(
        "--quantize",
        help="int8: the fastest CPU mode, linear layers in int8 on the CPU's VNNI/AMX units "
        "(needs curate[int8]; moves probabilities by up to 0.02 against --dtype float32).",
        show_default=False,
    ),
]
BatchSizeOption = Annotated[
    str,
    typer.Option(
        "--batch-size",
        help="Images per forward pass, or 'auto' (sized to the GPU's free memory; 8 on CPU).",
    ),
]
ChunkRowsOption = Annotated[
    int,
    typer.Option(
        "--chunk-rows",
        min=1,
        help="Rows per finished chunk in OUTPUT.work/ beside the output (what a crash can lose).",
    ),
]
# The source: `curate score`, `curate eval`, `curate adapt`.
ImageColumnOption = Annotated[
    str | None,
    typer.Option(
        "--image-column",
        help="Image column of a Parquet/datasets source (default: 'image', or the only image "
        "column).",
        show_default=False,
    ),
]
SplitOption = Annotated[
    str | None, typer.Option("--split", help="Split of a DatasetDict or Hub dataset.")
]
LimitOption = Annotated[
    int | None,
    typer.Option("--limit", min=1, help="Use only the first N rows of SOURCE.", show_default=False),
]
# Labelled sources: `curate eval`, `curate adapt`.
LabelColumnOption = Annotated[
    str,
    typer.Option(
        "--label-column",
        help="Ground-truth column; for a folder of images, each image's top-level folder.",
    ),
]
LabelMapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--label-map",
        help="VALUE=Fake|Real pairs, comma-separated or repeated (needed for numeric labels; "
        "names like fake/real/synthetic are understood without).",
        show_default=False,
    ),
]
# Reports: `curate eval`, `curate report`.
OutDirOption = Annotated[
    Path, typer.Option("--out-dir", help="Folder to write the report and its plots to.")
]
# Decisions: `curate filter`, `curate report`.
ReviewBandOption = Annotated[
    tuple[float, float] | None,
    typer.Option(
        "--review-band",
        help="LO HI: rows with LO <= fake_prob < HI go to review (LO <= threshold <= HI).",
        show_default=False,
    ),
]


def overwrite_flag(replaces: str) -> typer.models.OptionInfo:
    """`--overwrite`, saying what it replaces ("an existing output file")."""
    return typer.Option("--overwrite", help=f"Replace {replaces}.")


def model_ids(model: list[str] | None) -> tuple[str, ...] | None:
    """Repeated --model as a request takes it: None for the default model."""
    return tuple(model) if model else None


COMPILE_MODES = {"auto": "auto", "always": True, "never": False}


def compile_mode(value: str) -> bool | str:
    """--compile as the scorer takes it: "auto", True or False."""
    mode = COMPILE_MODES.get(value.strip().lower())
    if mode is None:
        fail(f"--compile must be auto, always or never, got {value!r}", 2)
    return mode


def review_band(value: tuple[float, float] | None) -> tuple[float, float] | None:
    """--review-band as a request takes it: None when not given."""
    return tuple(value) if value and None not in value else None


class UsageError(Exception):
    """Bad arguments or an unusable input: exit code 2."""


def fail(message: str, code: int) -> NoReturn:
    # One line, whatever the message holds: a user's terminal, not a traceback.
    line = " ".join(str(message).split())
    stderr.print(Text(f"Error: {line}", style="bold red"), soft_wrap=True)
    raise typer.Exit(code)


# Exceptions that mean "bad arguments or an unusable input" (exit 2), by module and name: looked
# up only if their module is loaded already, so `curate filter` never imports torch to check.
_USAGE_ERRORS = (
    ("curate.sources", "SourceError"),
    ("curate.runs", "ResumeMismatchError"),
    ("curate.io.parquet", "ParquetExportError"),
)
_MODEL_ERRORS = (("curate.detectors.base", "ModelLoadError"),)


def _is_one_of(exc: BaseException, names: tuple[tuple[str, str], ...]) -> bool:
    for module, name in names:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def guarded(fn):
    """Run a command body, turning every failure into a one-line error and an exit code."""
    try:
        return fn()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        stderr.print("Interrupted.", style="yellow")
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("CURATE_DEBUG"):
            raise
        if _is_one_of(exc, _MODEL_ERRORS):
            fail(str(exc), 1)
        # ValueError covers curate.app's RequestError and every check that raises it.
        usage = (UsageError, FileExistsError, IsADirectoryError, ValueError)
        if isinstance(exc, usage) or _is_one_of(exc, _USAGE_ERRORS):
            fail(str(exc), 2)
        fail(f"{type(exc).__name__}: {exc}", 1)


class _RateColumn(ProgressColumn):
    """Images per second over the recent window (rich's own speed estimate)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed and task.elapsed:  # too few updates for rich's windowed estimate
            speed = (task.completed - task.fields.get("resumed", 0)) / task.elapsed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="cyan")


def progress_bar(unit: str) -> RichProgress:
    return RichProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )


class ConsoleProgress(Progress):
    """A use case's progress on stderr: a spinner for a step without a row count, a bar with
    rows, images per second and time left for one with. Use as a context manager."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self._status = None
        self._bar: RichProgress | None = None
        self._task = None

    def note(self, message: str) -> None:
        stderr.print(Text(message))

    def wait(self, description: str) -> None:
        self._stop()
        self._status = stderr.status(f"{description} ...")
        self._status.start()

    def start(self, description: str, total: int | None, done: int = 0) -> None:
        self._stop()
        self._bar = progress_bar(self.unit)
        self._bar.start()
        self._task = self._bar.add_task(description, total=total, completed=done, resumed=done)

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, rows)

    def shard_done(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"Scoring: shard {done}/{total}")

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
