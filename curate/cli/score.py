"""`curate score`: score images and write them, with their scores, to Parquet."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from curate.cli.common import UsageError, fail, guarded, progress_bar, stderr, stdout


def _fmt(p: float | None) -> str:
    return "-" if p is None else f"{p:.3f}"


def _print_single(path: str, scores: dict[str, list]) -> None:
    """The seed demo as a command: one image's Fake/Real probabilities."""
    error = scores["deepfake_error"][0]
    if error is not None:
        fail(f"cannot score {path}: {error}", 1)
    table = Table(title=os.path.basename(path), title_justify="left")
    table.add_column("label")
    table.add_column("probability", justify="right")
    for label, column in (("Fake", "fake_prob"), ("Real", "real_prob")):
        table.add_row(label, _fmt(scores[column][0]))
    stdout.print(table)
    stdout.print(f"prediction: [bold]{scores['deepfake_label'][0]}[/bold]")
    if "provenance" in scores:
        stdout.print(Text(f"provenance: {scores['provenance'][0]}"))


def _score_summary(output: str, seconds: float, new_rows: int) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(output, columns=["deepfake_label", "deepfake_error"])
    labels = table.column("deepfake_label")
    fake = int(pc.sum(pc.equal(labels, "Fake")).as_py() or 0)
    real = int(pc.sum(pc.equal(labels, "Real")).as_py() or 0)
    errors = table.num_rows - table.column("deepfake_error").null_count
    stdout.print(f"Scored {table.num_rows} images -> {output}")
    summary = Table()
    summary.add_column("rows", justify="right")
    summary.add_column("Fake", justify="right")
    summary.add_column("Real", justify="right")
    summary.add_column("unreadable", justify="right")
    summary.add_column("images/s", justify="right")
    rate = f"{new_rows / seconds:.2f}" if seconds > 0 and new_rows else "-"
    summary.add_row(str(table.num_rows), str(fake), str(real), str(errors), rate)
    stdout.print(summary)
    if "provenance_synthetic" in pq.read_schema(output).names:
        from curate.provenance import evidence_counts

        cols = pq.read_table(output, columns=["provenance_synthetic", "provenance_strong"])
        n = evidence_counts(*(cols.column(c).to_pylist() for c in cols.column_names))
        stdout.print(
            f"Provenance evidence: {n['synthetic']} rows say synthetic ({n['strong']} strong), "
            f"{n['captured']} say captured, {n['none']} none found (absence proves nothing)."
        )


def _score_on_ray(
    src, source: str, output: Path | None, *, address, num_gpus, overwrite, unsupported, **kw
) -> None:
    """`curate score --engine ray`: the same scorer as Ray Data actors, one per GPU."""
    import torch

    if output is None:
        raise UsageError("--engine ray writes a Parquet file: pass -o OUT.parquet")
    if src.kind not in ("image", "folder", "parquet"):
        raise UsageError(f"--engine ray reads image files and Parquet; {source} is a {src.kind}")
    for flag, used in unsupported.items():
        if used:
            raise UsageError(f"{flag} is not supported with --engine ray")
    if num_gpus and address is None and torch.cuda.device_count() < num_gpus:
        raise UsageError(
            f"--num-gpus {num_gpus} but this machine has {torch.cuda.device_count()} CUDA GPU(s)"
        )
    from curate.integrations.ray import score_files

    started = time.perf_counter()
    with stderr.status(f"Scoring with Ray ({address or 'local cluster'}) ..."):
        rows = score_files(
            source,
            output,
            address=address,
            num_gpus=1 if num_gpus else None,
            concurrency=num_gpus,
            image_column=src.image_column if src.kind == "parquet" else None,
            overwrite=overwrite,
            **kw,
        )
    _score_summary(os.fspath(output), time.perf_counter() - started, rows)


def score(
    source: Annotated[
        str,
        typer.Argument(
            help="An image, a folder of images (recursive), Parquet file(s) or a glob, a "
            "save_to_disk directory, or a Hub dataset name (with --split).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Parquet file to write (images embedded). Optional for a single image, whose "
            "probabilities are printed.",
            dir_okay=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Hub id or local directory of the detector (default: $CURATE_MODEL, else "
            "prithivMLmods/open-deepfake-detection).",
            show_default=False,
        ),
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Model revision to pin.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")
    ] = "auto",
    batch_size: Annotated[
        str,
        typer.Option(
            help="Images per forward pass, or 'auto' (sized to the GPU's free memory; 8 on CPU)."
        ),
    ] = "16",
    image_column: Annotated[
        str | None,
        typer.Option(
            help="Image column of a Parquet/datasets source (default: 'image', or the only "
            "image column).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split of a DatasetDict or Hub dataset.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="Config (subset) of a Hub dataset.")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Score only the first N rows.", show_default=False)
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output file.")
    ] = False,
    draft: Annotated[
        bool,
        typer.Option("--draft", help="Decode JPEGs at reduced scale (faster, approximate)."),
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(help="Calibration JSON to apply to the probabilities.", exists=True),
    ] = None,
    chunk_rows: Annotated[
        int,
        typer.Option(min=1, help="Rows per finished chunk in OUT.work/ (what a crash can lose)."),
    ] = 256,
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
            "local cluster or the one at --address; image folders/files and Parquet).",
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
    """

    def body() -> None:
        from curate.detectors import resolve_device, resolve_dtype
        from curate.provenance import checker_from_options
        from curate.runs import ScoringRun, work_dir_for
        from curate.scorer import DeepfakeScorer
        from curate.sources import resolve_source

        src = resolve_source(
            source,
            image_column=image_column,
            split=split,
            limit=limit,
            config=config,
        )
        if output is None and src.kind != "image":
            raise UsageError(f"{source} is a {src.kind} source: pass -o OUT.parquet")
        resolve_dtype(dtype, resolve_device(device))  # bad --device/--dtype: exit 2, now
        if batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) >= 1):
            raise UsageError(
                f"--batch-size must be a positive integer or 'auto', got {batch_size!r}"
            )
        if engine not in ("local", "ray"):
            raise UsageError(f"--engine must be 'local' or 'ray', got {engine!r}")
        if engine == "ray" or (num_gpus or 0) > 1:
            _score_on_ray(
                src,
                source,
                output,
                address=address,
                num_gpus=num_gpus,
                overwrite=overwrite,
                unsupported={
                    "--provenance": provenance or watermark or trust_anchors,
                    "--limit": limit,
                },
                model=model,
                revision=revision,
                device=device,
                dtype=dtype,
                batch_size=batch_size if batch_size == "auto" else int(batch_size),
                draft=draft,
                calibration=os.fspath(calibration) if calibration else None,
            )
            return
        scorer = DeepfakeScorer(
            model=model,
            revision=revision,
            device=device,
            dtype=dtype,
            batch_size=batch_size if batch_size == "auto" else int(batch_size),
            image_column=src.image_column,
            draft=draft,
            calibration=os.fspath(calibration) if calibration else None,
            provenance=checker_from_options(provenance, watermark, trust_anchors),
        )
        if output is None:
            scorer.load()
            batch = next(src.batches(1))
            _print_single(source, scorer.score_images(batch[src.image_column]))
            return
        run = ScoringRun(src, scorer, output, overwrite=overwrite, chunk_rows=chunk_rows)
        if run.resumed_rows:
            stderr.print(
                f"Resuming: {run.resumed_rows} rows already scored in {work_dir_for(output)}"
            )
        with stderr.status(f"Loading {scorer.model} ..."):
            scorer.load()
        started = time.perf_counter()
        with progress_bar("img") as bar:
            task = bar.add_task(
                "Scoring", total=src.num_rows, completed=run.resumed_rows, resumed=run.resumed_rows
            )
            try:
                rows = run.run(progress=lambda n: bar.advance(task, n))
            except KeyboardInterrupt:
                bar.stop()
                stderr.print(
                    f"Interrupted: finished chunks are kept in {work_dir_for(output)}; run the "
                    "same command again to resume."
                )
                raise typer.Exit(130) from None
        seconds = time.perf_counter() - started
        if src.kind == "image":
            import pyarrow.parquet as pq

            _print_single(
                source, pq.read_table(output).drop_columns([src.image_column]).to_pydict()
            )
        _score_summary(os.fspath(output), seconds, rows - run.resumed_rows)

    guarded(body)
