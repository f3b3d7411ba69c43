"""The `curate` command line: `curate score` and `curate filter`, thin over the library.

Progress bars and errors go to stderr, results (tables) to stdout. Errors are one line:
exit code 2 for bad arguments or unusable inputs, 1 for failures while running (a model that
cannot load, a disk that fills up), 130 when interrupted. Set CURATE_DEBUG=1 for tracebacks.
"""

from __future__ import annotations

import os
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

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
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    name="curate",
    help="Find and remove synthetic (AI-generated) images in image datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


class UsageError(Exception):
    """Bad arguments or an unusable input: exit code 2."""


@app.callback()
def _root() -> None:
    """Find and remove synthetic (AI-generated) images in image datasets."""


def _fail(message: str, code: int) -> NoReturn:
    # One line, whatever the message holds: a user's terminal, not a traceback.
    line = " ".join(str(message).split())
    stderr.print(Text(f"Error: {line}", style="bold red"), soft_wrap=True)
    raise typer.Exit(code)


def _guarded(fn):
    """Run a command body, turning every failure into a one-line error and an exit code."""
    from curate.filtering import DecisionRule  # noqa: F401  (import errors surface here)
    from curate.model import ModelLoadError
    from curate.parquet import ParquetExportError, ResumeMismatchError
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
            _fail(str(exc), 1)
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
            _fail(str(exc), 2)
        _fail(f"{type(exc).__name__}: {exc}", 1)


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


def _progress(unit: str) -> Progress:
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


def _fmt(p: float | None) -> str:
    return "-" if p is None else f"{p:.3f}"


def _print_single(path: str, scores: dict[str, list]) -> None:
    """The seed demo as a command: one image's Fake/Real probabilities."""
    error = scores["deepfake_error"][0]
    if error is not None:
        _fail(f"cannot score {path}: {error}", 1)
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


@app.command()
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
        from curate.model import resolve_device, resolve_dtype
        from curate.parquet import ScoringRun, work_dir_for
        from curate.provenance import checker_from_options
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
        with _progress("img") as bar:
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

    _guarded(body)


class Unscored(str, Enum):
    keep = "keep"
    drop = "drop"
    separate = "separate"


def sibling(kept: Path, role: str) -> Path:
    """`kept.parquet` -> `kept.<role>.parquet`, beside it (default review/unscored files)."""
    suffix = kept.suffix or ".parquet"
    return kept.with_name(f"{kept.name.removesuffix(kept.suffix)}.{role}{suffix}")


@app.command("filter")
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
        with _progress("rows") as bar:
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

    _guarded(body)


class Calibrate(str, Enum):
    none = "none"
    temperature = "temperature"
    platt = "platt"


@app.command("eval")
def eval_(
    source: Annotated[
        str,
        typer.Argument(
            help="Labelled images: a folder with fake/ and real/ subfolders, Parquet file(s) "
            "(scored by `curate score` or not), a save_to_disk directory or a Hub dataset.",
            show_default=False,
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Folder for the report, plots and calibration.")
    ],
    label_column: Annotated[
        str,
        typer.Option(
            help="Ground-truth column; for a folder of images, each image's top-level folder."
        ),
    ] = "label",
    label_map: Annotated[
        list[str] | None,
        typer.Option(
            help="VALUE=Fake|Real pairs, comma-separated or repeated (needed for numeric "
            "labels; names like fake/real/synthetic are understood without).",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Cut for the card-style table.")
    ] = 0.5,
    target_precision: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Choose the cut where this share of removed images is Fake."
        ),
    ] = None,
    target_recall: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Choose the cut that removes this share of Fakes."),
    ] = None,
    max_fpr: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Choose the cut that removes at most this share of Reals."
        ),
    ] = None,
    prevalence: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of Fakes in the data you will curate (default: the sample's).",
            show_default=False,
        ),
    ] = None,
    dataset_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Images in the data you will curate, for expected counts.",
            show_default=False,
        ),
    ] = None,
    confidence: Annotated[
        float | None,
        typer.Option(
            min=0.5,
            max=0.9999,
            help="Meet the target with this confidence (Clopper-Pearson bounds), not on average.",
            show_default=False,
        ),
    ] = None,
    review_budget: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Images you can review by hand (or a share, below 1): sizes a review band.",
            show_default=False,
        ),
    ] = None,
    fit_calibration: Annotated[
        Calibrate,
        typer.Option(help="Fit a calibration and write OUT_DIR/calibration.json."),
    ] = Calibrate.none,
    calibration_holdout: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share held out to measure the calibration.")
    ] = 0.5,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Score with this calibration JSON (as `curate score` would).", exists=True
        ),
    ] = None,
    robustness: Annotated[
        bool,
        typer.Option("--robustness", help="Re-score after JPEG re-compression and downscaling."),
    ] = False,
    perturb: Annotated[
        list[str] | None,
        typer.Option(
            help="jpeg:QUALITY or downscale:FACTOR, repeated (default: jpeg:90 jpeg:75 jpeg:50 "
            "downscale:0.5 downscale:0.25).",
            show_default=False,
        ),
    ] = None,
    probe_limit: Annotated[
        int, typer.Option(min=2, help="Images (stratified sample) for the robustness probe.")
    ] = 200,
    group_column: Annotated[
        str | None,
        typer.Option(
            help="Column to break results down by (a folder's parent folder by default).",
            show_default=False,
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for CIs.")] = 1000,
    bins: Annotated[int, typer.Option(min=2, help="Bins for ECE and the reliability plot.")] = 15,
    seed: Annotated[int, typer.Option(help="Seed for bootstrap, hold-out and probe sample.")] = 0,
    rescore: Annotated[
        bool, typer.Option("--rescore", help="Score again even if the source has fake_prob.")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(help="Hub id or local directory of the detector.", show_default=False),
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Model revision to pin.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16.")] = "auto",
    batch_size: Annotated[
        str,
        typer.Option(
            help="Images per forward pass, or 'auto' (sized to the GPU's free memory; 8 on CPU)."
        ),
    ] = "16",
    image_column: Annotated[
        str | None, typer.Option(help="Image column of a Parquet/datasets source.")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split of a DatasetDict or Hub dataset.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use only the first N rows.", show_default=False)
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a report already in OUT_DIR.")
    ] = False,
) -> None:
    """Measure the detector on your own labelled sample and choose a threshold from evidence.

    Prints the model card's classification table plus ROC-AUC, AP, TPR at 1 %/5 % FPR and ECE;
    writes report.md, report.json, scores.parquet and plots (hist, roc, pr, reliability) to
    OUT_DIR, and calibration.json with --fit-calibration. The chosen threshold (and review
    band) go straight into `curate filter`, the calibration into `curate score --calibration`.
    """

    def body() -> None:
        from curate import evaluate as ev
        from curate.model import resolve_device, resolve_dtype
        from curate.scorer import DeepfakeScorer
        from curate.sources import resolve_source

        lmap = ev.parse_label_map(label_map) if label_map else None
        perturbations = tuple(perturb) if perturb else ev.DEFAULT_PERTURBATIONS
        if os.path.exists(out_dir / "report.json") and not overwrite:
            raise UsageError(f"{out_dir} already holds a report (pass --overwrite to replace it)")
        src = resolve_source(source, image_column=image_column, split=split, limit=limit)
        resolve_dtype(dtype, resolve_device(device))
        if batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) >= 1):
            raise UsageError(
                f"--batch-size must be a positive integer or 'auto', got {batch_size!r}"
            )
        scorer = DeepfakeScorer(
            model=model,
            revision=revision,
            device=device,
            dtype=dtype,
            batch_size=batch_size if batch_size == "auto" else int(batch_size),
            image_column=src.image_column,
            calibration=os.fspath(calibration) if calibration else None,
            with_logits=True,
        )
        if robustness:
            ev.check_perturbations(perturbations)
        with _progress("img") as bar:
            task = bar.add_task("Reading labels and scores", total=src.num_rows)
            sample = ev.collect_labelled(
                src,
                label_column,
                scorer=scorer,
                label_map=lmap,
                group_column=group_column,
                # Rows read per scorer call; the scorer splits them into forward batches.
                batch_size=256 if batch_size == "auto" else max(int(batch_size), 64),
                rescore=rescore,
                progress=lambda n: bar.advance(task, n),
            )
        options = ev.EvalOptions(
            threshold=threshold,
            target_precision=target_precision,
            target_recall=target_recall,
            max_fpr=max_fpr,
            review_budget=review_budget,
            prevalence=prevalence,
            dataset_size=dataset_size,
            confidence=confidence,
            fit_calibration=None if fit_calibration is Calibrate.none else fit_calibration.value,
            calibration_holdout=calibration_holdout,
            n_boot=bootstrap,
            n_bins=bins,
            seed=seed,
        )
        report = ev.evaluate_sample(sample, options)
        report.source = source
        if calibration and sample.calibration != scorer.calibration:
            report.notes.append(
                "--calibration was not applied: the scores were read from the source "
                "(pass --rescore to score again with it)"
            )
        if robustness and report.chosen.threshold is not None:
            idx = ev.probe_indices(sample.y, probe_limit, seed)
            images = ev.gather_images(src, sample.rows[idx])
            fitted = report.calibration.calibration if report.calibration else None
            probe_scorer = scorer
            if (model is None and sample.model and sample.model != scorer.model) or (
                sample.calibration != scorer.calibration
            ):
                # Stored scores: re-score with the model and calibration that made them.
                probe_scorer = DeepfakeScorer(
                    model=sample.model if model is None and sample.model else scorer.model,
                    revision=revision,
                    device=device,
                    dtype=dtype,
                    batch_size=scorer.batch_size,
                    image_column=src.image_column,
                    calibration=sample.calibration,
                    with_logits=True,
                )
            with _progress("img") as bar:
                task = bar.add_task(f"Robustness ({len(perturbations)} variants)", total=len(idx))
                report.robustness = ev.robustness_probe(
                    probe_scorer,
                    images,
                    sample.y[idx],
                    report.chosen.threshold,
                    perturbations=perturbations,
                    calibration=fitted,
                    progress=lambda n: bar.advance(task, n),
                )
        files = ev.write_eval_report(report, sample, os.fspath(out_dir), overwrite=overwrite)
        stdout.print(ev.console_summary(report), markup=False, highlight=False, soft_wrap=True)
        stdout.print(f"Wrote {len(files)} files to {out_dir}", markup=False)

    _guarded(body)


@app.command("report")
def report_(
    scored: Annotated[
        str, typer.Argument(help="Scored Parquet file (from `curate score`), or a glob of them.")
    ],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for the report and plot.")],
    thresholds: Annotated[
        str,
        typer.Option(help="Comma-separated candidate thresholds to count at."),
    ] = ",".join(f"{t:g}" for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)),
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="A decision to count (as `curate filter`).", show_default=False
        ),
    ] = None,
    review_band: Annotated[
        tuple[float, float] | None,
        typer.Option(help="LO HI review band of that decision.", show_default=False),
    ] = None,
    from_eval: Annotated[
        Path | None,
        typer.Option(
            help="report.json of `curate eval`: count its chosen threshold and review band.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a report already in OUT_DIR.")
    ] = False,
) -> None:
    """Histogram of fake_prob and counts at candidate thresholds for scored, unlabelled data."""

    def body() -> None:
        import glob

        from curate import evaluate as ev
        from curate.filtering import DecisionRule

        paths = sorted(glob.glob(scored)) if any(c in scored for c in "*?[") else [scored]
        if not paths:
            raise UsageError(f"no files match {scored!r}")
        for p in paths:
            if not os.path.isfile(p):
                raise UsageError(f"{p} does not exist or is not a file")
        try:
            cands = sorted({float(t) for t in thresholds.split(",") if t.strip()})
        except ValueError:
            raise UsageError(
                f"--thresholds must be comma-separated numbers, got {thresholds!r}"
            ) from None
        if any(not 0.0 <= t <= 1.0 for t in cands):
            raise UsageError("--thresholds must lie in [0, 1]")
        if from_eval is not None and threshold is not None:
            raise UsageError("give --threshold or --from-eval, not both")
        with stderr.status("Reading scores ..."):
            p, meta = ev.read_scores(paths)
        notes: list[str] = []
        rule = None
        band = tuple(review_band) if review_band and None not in review_band else None
        if from_eval is not None:
            import json

            cal = json.loads(meta.get("curate.calibration", "null"))
            t, band, notes = ev.rule_from_eval(os.fspath(from_eval), cal)
            rule = DecisionRule(threshold=t, review_band=band)
        elif threshold is not None or band:
            rule = DecisionRule(threshold=0.5 if threshold is None else threshold, review_band=band)
        rep = ev.summarize_scores(
            p, source=scored, metadata=meta, thresholds=cands, rule=rule, notes=notes
        )
        ev.write_score_report(rep, p, os.fspath(out_dir), overwrite=overwrite)
        table = Table(
            title=f"{rep.rows} rows ({rep.scored} scored, {rep.unscored} unscored)",
            title_justify="left",
        )
        for col in ("threshold", "kept", "removed", "removed share"):
            table.add_column(col, justify="right")
        for c in rep.counts:
            table.add_row(
                f"{c['threshold']:g}",
                str(c["kept"]),
                str(c["removed"]),
                f"{c['removed_share']:.2%}",
            )
        stdout.print(table)
        if rep.rule:
            r = rep.rule
            stdout.print(
                f"decision at {r['threshold']:.6g}"
                + (
                    f" with review band {r['review_band'][0]:.6g}-{r['review_band'][1]:.6g}"
                    if r["review_band"]
                    else ""
                )
                + f": keep {r['keep']}, remove {r['remove']}, review {r['review']}, unscored {r['unscored']}",
                markup=False,
            )
        for n in rep.notes:
            stdout.print(f"note: {n}", markup=False)
        stdout.print(f"Wrote report.md, report.json, hist.png to {out_dir}", markup=False)

    _guarded(body)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
