"""`curate filter`: split a scored Parquet file (or a folder of scored shards) into kept /
removed / review / unscored files (or folders of shards).

Options -> `curate.app.filter.FilterRequest` -> `curate.app.filter.filter_scored` -> printed
counts.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate import schema
from curate.app.filter import FilteredParquet, FilterRequest, filter_scored
from curate.cli.common import ConsoleProgress, ReviewBandOption, guarded, overwrite_flag, stdout
from curate.cli.common import review_band as band_of


class Format(str, Enum):
    parquet = "parquet"
    webdataset = "webdataset"


class Unscored(str, Enum):
    keep = "keep"
    drop = "drop"
    separate = "separate"


def filter_(
    scored: Annotated[
        str,
        typer.Argument(
            help="Scored Parquet file (from `curate score`), a glob of them, or a folder of "
            "scored shards (curate score SHARDS -o FOLDER)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Parquet file for the kept rows (a folder when SCORED is a folder of shards).",
        ),
    ],
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Keep rows with fake_prob below this.")
    ] = schema.LABEL_THRESHOLD,
    removed: Annotated[
        Path | None,
        typer.Option(
            help="Parquet file (or folder, for shards) for the removed rows (otherwise only "
            "counted)."
        ),
    ] = None,
    review_band: ReviewBandOption = None,
    review: Annotated[
        Path | None,
        typer.Option(
            help="Parquet file for review rows (default: KEPT.review.parquet).", show_default=False
        ),
    ] = None,
    unscored: Annotated[
        Unscored,
        typer.Option(help="Rows whose image could not be scored: keep, drop, or separate."),
    ] = Unscored.separate,
    unscored_output: Annotated[
        Path | None,
        typer.Option(
            help="Parquet file for unscored rows when separate (default: KEPT.unscored.parquet).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[bool, overwrite_flag("existing output files")] = False,
    remove_strong_evidence: Annotated[
        bool,
        typer.Option(
            "--remove-strong-evidence",
            help="Remove rows with strong provenance evidence of synthesis (valid C2PA "
            "AI-generation claim, matched watermark) whatever their score. Needs a file "
            "scored with --provenance.",
        ),
    ] = False,
    format: Annotated[
        Format,
        typer.Option(
            "--format",
            help="For a folder of shards: parquet, or webdataset (tar shards of the samples "
            "scored, every member byte-identical, from the shards they were scored from).",
        ),
    ] = Format.parquet,
    review_conflicts: Annotated[
        bool,
        typer.Option(
            "--review-conflicts",
            help="Send rows whose provenance evidence disagrees with the score to review.",
        ),
    ] = False,
) -> None:
    """Split a scored Parquet file into kept / removed / review / unscored files.

    Kept: fake_prob < threshold (or < LO with --review-band). Review rows go to
    KEPT.review.parquet, unscored rows (--unscored separate, the default) to
    KEPT.unscored.parquet, unless named otherwise. The counts always add up to the input.

    A folder of scored shards gives folders of shards (KEPT.review/, KEPT.unscored/ by
    default), one per scored shard; --format webdataset writes them as tar shards holding
    the original samples, every member byte-identical.
    """

    request = FilterRequest(
        scored=scored,
        output=output,
        threshold=threshold,
        review_band=band_of(review_band),
        unscored=unscored.value,
        removed=removed,
        review=review,
        unscored_output=unscored_output,
        overwrite=overwrite,
        remove_strong_evidence=remove_strong_evidence,
        review_conflicts=review_conflicts,
        format=format.value,
    )

    def body() -> None:
        with ConsoleProgress("rows") as progress:
            result = filter_scored(request, progress)
        _print_counts(result)

    guarded(body)


def _print_counts(result: FilteredParquet) -> None:
    rule, counts = result.rule, result.counts
    band = rule.review_band
    stdout.print(
        f"Filtered {counts.total} rows (threshold {rule.threshold:g}"
        + (f", review band {band[0]:g}-{band[1]:g}" if band else "")
        + f", unscored: {rule.unscored}"
        + (", strong provenance evidence removes" if rule.remove_strong_evidence else "")
        + (", evidence/score conflicts reviewed" if rule.review_conflicts else "")
        + ")"
    )
    table = Table()
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    table.add_column("file")
    table.add_row("kept", str(counts.keep), result.kept)
    table.add_row("removed", str(counts.remove), result.removed or "(not written)")
    if result.review is not None:
        table.add_row("review", str(counts.review), result.review)
    if result.unscored is not None:
        table.add_row("unscored", str(counts.unscored), result.unscored)
    table.add_row("total", str(counts.total), "", style="bold")
    stdout.print(table)
    if result.shards is not None:
        stdout.print(f"{result.shards} shards in, {result.shards} shards in each folder out.")
    if counts.errored:
        note = {"keep": "kept", "drop": "removed", "separate": "set apart"}[rule.unscored]
        stdout.print(f"{counts.errored} rows had unreadable images ({note}).")
