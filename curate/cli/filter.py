"""`curate filter`: split a scored Parquet file into kept / removed / review / unscored files."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli.common import UsageError, guarded, progress_bar, stdout


class Unscored(str, Enum):
    keep = "keep"
    drop = "drop"
    separate = "separate"


def sibling(kept: Path, role: str) -> Path:
    """`kept.parquet` -> `kept.<role>.parquet`, beside it (default review/unscored files)."""
    suffix = kept.suffix or ".parquet"
    return kept.with_name(f"{kept.name.removesuffix(kept.suffix)}.{role}{suffix}")


def filter_(
    scored: Annotated[
        str,
        typer.Argument(help="Scored Parquet file (from `curate score`), or a glob of them."),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Parquet file for the kept rows.", dir_okay=False),
    ],
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Keep rows with fake_prob below this.")
    ] = 0.5,
    removed: Annotated[
        Path | None,
        typer.Option(
            help="Parquet file for the removed rows (otherwise only counted).", dir_okay=False
        ),
    ] = None,
    review_band: Annotated[
        tuple[float, float] | None,
        typer.Option(
            help="LO HI: rows with LO <= fake_prob < HI go to review (LO <= threshold <= HI).",
            show_default=False,
        ),
    ] = None,
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
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing output files.")
    ] = False,
    remove_strong_evidence: Annotated[
        bool,
        typer.Option(
            "--remove-strong-evidence",
            help="Remove rows with strong provenance evidence of synthesis (valid C2PA "
            "AI-generation claim, matched watermark) whatever their score. Needs a file "
            "scored with --provenance.",
        ),
    ] = False,
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
    """

    def body() -> None:
        import glob

        import pyarrow.parquet as pq

        from curate.filtering import DecisionRule, filter_parquet

        paths = sorted(glob.glob(scored)) if any(c in scored for c in "*?[") else [scored]
        if not paths:
            raise UsageError(f"no files match {scored!r}")
        for p in paths:
            if not os.path.isfile(p):
                raise UsageError(f"{p} does not exist or is not a file")
            try:
                names = pq.read_schema(p).names
            except Exception as exc:
                raise UsageError(f"cannot read {p} as Parquet: {exc}") from None
            if "fake_prob" not in names:
                raise UsageError(
                    f"{p} has no 'fake_prob' column (columns: {', '.join(names)}); score it "
                    "first with `curate score`"
                )
        band = tuple(review_band) if review_band and None not in review_band else None
        rule = DecisionRule(
            threshold=threshold,
            review_band=band,
            unscored=unscored.value,
            remove_strong_evidence=remove_strong_evidence,
            review_conflicts=review_conflicts,
        )
        review_path = (review or sibling(output, "review")) if rule.can_review else None
        unscored_path = (
            (unscored_output or sibling(output, "unscored"))
            if rule.unscored == "separate"
            else None
        )
        if not overwrite:
            for p in (output, removed, review_path, unscored_path):
                if p is not None and os.path.exists(p):
                    raise UsageError(f"{p} already exists (pass --overwrite to replace it)")
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        with progress_bar("rows") as bar:
            task = bar.add_task("Filtering", total=total)
            counts = filter_parquet(
                paths,
                output,
                rule,
                removed=removed,
                review=review_path,
                unscored=unscored_path,
                overwrite=overwrite,
                progress=lambda n: bar.advance(task, n),
            )
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
        table.add_row("kept", str(counts.keep), os.fspath(output))
        table.add_row(
            "removed", str(counts.remove), os.fspath(removed) if removed else "(not written)"
        )
        if rule.can_review:
            table.add_row("review", str(counts.review), os.fspath(review_path))
        if rule.unscored == "separate":
            table.add_row("unscored", str(counts.unscored), os.fspath(unscored_path))
        table.add_row("total", str(counts.total), "", style="bold")
        stdout.print(table)
        if counts.errored:
            note = {"keep": "kept", "drop": "removed", "separate": "set apart"}[rule.unscored]
            stdout.print(f"{counts.errored} rows had unreadable images ({note}).")
        if counts.total != total:
            raise RuntimeError(f"decided {counts.total} rows of {total}")

    guarded(body)
