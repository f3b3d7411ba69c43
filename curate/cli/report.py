"""`curate report`: score distribution and counts at candidate thresholds, without labels.

Options -> `curate.app.report.ReportRequest` -> `curate.app.report.report_scores` -> printed
counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from curate.cli.common import (
    ConsoleProgress,
    OutDirOption,
    ReviewBandOption,
    UsageError,
    guarded,
    overwrite_flag,
    stdout,
)
from curate.cli.common import review_band as band_of

if TYPE_CHECKING:
    from curate.evaluation.scores import ScoreReport


def report_(
    scored: Annotated[
        str, typer.Argument(help="Scored Parquet file (from `curate score`), or a glob of them.")
    ],
    out_dir: OutDirOption,
    thresholds: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated candidate thresholds to count at "
            "(default: 0.1 to 0.9 in steps of 0.1, 0.95, 0.99).",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="A decision to count (as `curate filter`).", show_default=False
        ),
    ] = None,
    review_band: ReviewBandOption = None,
    from_eval: Annotated[
        Path | None,
        typer.Option(
            help="report.json of `curate eval`: count its chosen threshold and review band.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    overwrite: Annotated[bool, overwrite_flag("a report already in OUT_DIR")] = False,
) -> None:
    """Histogram of fake_prob and counts at candidate thresholds for scored, unlabelled data."""

    def body() -> None:
        from curate.app.report import ReportRequest, report_scores

        request = ReportRequest(
            scored=scored,
            out_dir=out_dir,
            thresholds=None if thresholds is None else _numbers(thresholds),
            threshold=threshold,
            review_band=band_of(review_band),
            from_eval=from_eval,
            overwrite=overwrite,
        )
        with ConsoleProgress("rows") as progress:
            result = report_scores(request, progress)
        _print(result.report, result.out_dir)

    guarded(body)


def _numbers(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--thresholds must be comma-separated numbers, got {text!r}") from None


def _print(rep: ScoreReport, out_dir: str) -> None:
    table = Table(
        title=f"{rep.rows} rows ({rep.scored} scored, {rep.unscored} unscored)",
        title_justify="left",
    )
    for col in ("threshold", "kept", "removed", "removed share"):
        table.add_column(col, justify="right")
    for c in rep.counts:
        table.add_row(
            f"{c['threshold']:g}", str(c["kept"]), str(c["removed"]), f"{c['removed_share']:.2%}"
        )
    stdout.print(table)
    if rep.rule:
        r = rep.rule
        band = r["review_band"]
        stdout.print(
            f"decision at {r['threshold']:.6g}"
            + (f" with review band {band[0]:.6g}-{band[1]:.6g}" if band else "")
            + f": keep {r['keep']}, remove {r['remove']}, review {r['review']}, "
            f"unscored {r['unscored']}",
            markup=False,
        )
    for n in rep.notes:
        stdout.print(f"note: {n}", markup=False)
    stdout.print(f"Wrote report.md, report.json, hist.png to {out_dir}", markup=False)
