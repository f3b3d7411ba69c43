"""What every `curate` command shares: one-line errors with exit codes, progress bars, consoles.

Progress bars and errors go to stderr, results (tables) to stdout. Errors are one line:
exit code 2 for bad arguments or unusable inputs, 1 for failures while running (a model that
cannot load, a disk that fills up), 130 when interrupted. Set CURATE_DEBUG=1 for tracebacks.
"""

from __future__ import annotations

import os
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


class UsageError(Exception):
    """Bad arguments or an unusable input: exit code 2."""


def fail(message: str, code: int) -> NoReturn:
    # One line, whatever the message holds: a user's terminal, not a traceback.
    line = " ".join(str(message).split())
    stderr.print(Text(f"Error: {line}", style="bold red"), soft_wrap=True)
    raise typer.Exit(code)


def guarded(fn):
    """Run a command body, turning every failure into a one-line error and an exit code."""
    from curate.detectors import ModelLoadError
    from curate.filtering import DecisionRule  # noqa: F401  (import errors surface here)
    from curate.io.parquet import ParquetExportError
    from curate.runs import ResumeMismatchError
    from curate.sources import SourceError

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
        if isinstance(exc, ModelLoadError):
            fail(str(exc), 1)
        if isinstance(
            exc,
            (
                UsageError,
                SourceError,
                ResumeMismatchError,
                ParquetExportError,
                FileExistsError,
                IsADirectoryError,
                ValueError,
            ),
        ):
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


def progress_bar(unit: str) -> Progress:
    return Progress(
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
