"""`curate score`: score images and write them, with their scores, to Parquet.

Options -> `curate.app.score.ScoreRequest` -> `curate.app.score.score` -> printed summary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from curate import schema
from curate.app.score import ScoreInterrupted, ScoreRequest, ScoreResult
from curate.app.score import score as score_use_case
from curate.cli.common import (
    BatchSizeOption,
    ChunkRowsOption,
    CombineOption,
    CompileOption,
    ConsoleProgress,
    DeviceOption,
    DtypeOption,
    HeadOption,
    ImageColumnOption,
    LimitOption,
    ModelOption,
    QuantizeOption,
    RevisionOption,
    SplitOption,
    SyntheticLabelsOption,
    compile_mode,
    fail,
    guarded,
    model_ids,
    overwrite_flag,
    stderr,
    stdout,
)


def _fmt(p: float | None) -> str:
    return "-" if p is None else f"{p:.3f}"


def _print_single(path: str, row: Mapping[str, Any]) -> None:
    """The seed demo as a command: one image's Fake/Real probabilities."""
    error = row[schema.ERROR]
    if error is not None:
        fail(f"cannot score {path}: {error}", 1)
    table = Table(title=os.path.basename(path), title_justify="left")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for label, column in ((schema.FAKE, schema.FAKE_PROB), (schema.REAL, schema.REAL_PROB)):
        table.add_row(label, _fmt(row[column]))
    stdout.print(table)
    stdout.print(f"prediction: [bold]{row[schema.LABEL]}[/bold]")
    if schema.PROVENANCE in row:
        stdout.print(Text(f"provenance: {row[schema.PROVENANCE]}"))


def _print_summary(result: ScoreResult) -> None:
    shards = "" if result.shards is None else f" ({result.shards} shards)"
    stdout.print(f"Scored {result.rows} images -> {result.output}{shards}")
    summary = Table()
    for name in ("rows", "Fake", "Real", "unreadable", "images/s"):
        summary.add_column(name, justify="right")
    rate = result.images_per_second
    summary.add_row(
        str(result.rows),
        str(result.fake),
        str(result.real),
        str(result.unreadable),
        "-" if rate is None else f"{rate:.2f}",
    )
    stdout.print(summary)
    if result.provenance is not None:
        n = result.provenance
        stdout.print(
            f"Provenance evidence: {n['synthetic']} rows say synthetic ({n['strong']} strong), "
            f"{n['captured']} say captured, {n['none']} none found (absence proves nothing)."
        )


def score(
    source: Annotated[
        str,
        typer.Argument(
            help="An image, a folder of images (recursive), Parquet file(s) or a glob, "
            "WebDataset tar shards ('shards/{00000..00499}.tar', a glob, or a folder of them), "
            "a save_to_disk directory, or a Hub dataset name (with --split).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Parquet file to write (images embedded). For a source made of shards "
            "(WebDataset, Parquet files), a folder instead (a name without extension): one "
            "output shard per input shard, resumable per shard. Optional for a single image, "
            "whose probabilities are printed.",
        ),
    ] = None,
    model: ModelOption = None,
    revision: RevisionOption = None,
    combine: CombineOption = "mean",
    head: HeadOption = None,
    synthetic_labels: SyntheticLabelsOption = None,
    image_member: Annotated[
        str | None,
        typer.Option(
            help="WebDataset shards: the image member's extension, or several in order of "
            "preference ('png' or 'jpg,png'; default: jpg, jpeg, png, webp, bmp, gif, tif, "
            "tiff).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    compile: CompileOption = "auto",
    quantize: QuantizeOption = None,
    batch_size: BatchSizeOption = "16",
    image_column: ImageColumnOption = None,
    split: SplitOption = None,
    config: Annotated[str | None, typer.Option(help="Config (subset) of a Hub dataset.")] = None,
    limit: LimitOption = None,
    overwrite: Annotated[bool, overwrite_flag("an existing output file")] = False,
    draft: Annotated[
        bool,
        typer.Option("--draft", help="Decode JPEGs at reduced scale (faster, approximate)."),
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(help="Calibration JSON to apply to the probabilities.", exists=True),
    ] = None,
    chunk_rows: ChunkRowsOption = 256,
    provenance: Annotated[
        bool,
        typer.Option(
            "--provenance",
            help="Also report provenance evidence read from each file (C2PA content "
            "credentials, generator metadata): columns provenance, provenance_synthetic, "
            "provenance_strong, provenance_detail.",
        ),
    ] = False,
    watermark: Annotated[
        bool,
        typer.Option(
            "--watermark",
            help="Provenance: also look for the SD/SDXL/FLUX invisible watermark (decodes each "
            "image once more; implies --provenance).",
        ),
    ] = False,
    trust_anchors: Annotated[
        Path | None,
        typer.Option(
            help="Provenance: PEM file of C2PA trust anchors; manifests signed under them read "
            "as Trusted (implies --provenance).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process, resumable) or ray (Ray Data: one actor per GPU, on a "
            "local cluster or the one at --address; any source whose row count is known).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join with --engine ray ('auto', 'ray://HOST:10001'); default: "
            "start a local one.",
            show_default=False,
        ),
    ] = None,
    num_gpus: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="GPUs to use, one model copy each (more than 1 runs --engine ray on this "
            "machine).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score images as Fake/Real and write them, with their scores, to Parquet.

    Resumable: finished chunks are kept in OUT.work/ beside the output; re-running the same
    command after a crash continues from there. The output appears only when complete.

    Shards (-o FOLDER): one output shard per input shard and FOLDER/_manifest.json of the
    shards done; a re-run skips them and resumes the one in progress, and several processes
    given the same command share the shards.
    """

    request = ScoreRequest(
        source=source,
        output=output,
        model=model_ids(model),
        revision=revision,
        device=device,
        dtype=dtype,
        compile=compile_mode(compile),
        quantize=quantize,
        batch_size=batch_size,
        image_column=image_column,
        split=split,
        config=config,
        limit=limit,
        overwrite=overwrite,
        draft=draft,
        calibration=calibration,
        chunk_rows=chunk_rows,
        provenance=provenance,
        watermark=watermark,
        trust_anchors=trust_anchors,
        engine=engine,
        address=address,
        num_gpus=num_gpus,
        combine=combine,
        head=head,
        synthetic_labels=synthetic_labels,
        image_member=image_member,
    )

    def body() -> None:
        try:
            with ConsoleProgress("img") as progress:
                result = score_use_case(request, progress)
        except ScoreInterrupted as exc:
            stderr.print(
                f"Interrupted: finished chunks are kept in {exc.work_dir}; run the same "
                "command again to resume."
            )
            raise typer.Exit(130) from None
        if result.first is not None:
            _print_single(source, result.first)
        if result.output is not None:
            _print_summary(result)

    guarded(body)
