"""`curate adapt`: fit a linear head on the detector's embeddings of your labelled images.

Options -> `curate.app.adapt.AdaptRequest` -> `curate.app.adapt.adapt` -> the base detector's
and the head's held-out figures, side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli.common import (
    BatchSizeOption,
    ChunkRowsOption,
    ConsoleProgress,
    DeviceOption,
    DtypeOption,
    ImageColumnOption,
    LabelColumnOption,
    LabelMapOption,
    LimitOption,
    RevisionOption,
    SplitOption,
    SyntheticLabelsOption,
    guarded,
    overwrite_flag,
    stderr,
    stdout,
)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def adapt_(
    source: Annotated[
        str,
        typer.Argument(
            help="Labelled images, as `curate eval` takes them: a folder with fake/ and real/ "
            "subfolders, Parquet file(s), a save_to_disk directory or a Hub dataset.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Folder to write the head to (it must not exist)."),
    ],
    label_column: LabelColumnOption = "label",
    label_map: LabelMapOption = None,
    eval_source: Annotated[
        str | None,
        typer.Option(
            "--eval",
            help="Separate labelled images for the held-out figures (say, another generator); "
            "default: a stratified --holdout share of SOURCE.",
            show_default=False,
        ),
    ] = None,
    holdout: Annotated[
        float,
        typer.Option(help="Share of SOURCE held out from fitting to measure it (without --eval)."),
    ] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of the hold-out split and the CV folds.")] = 0,
    model: Annotated[
        str | None,
        typer.Option(
            help="Hub id or local directory of the detector to adapt (default: $CURATE_MODEL, "
            "else prithivMLmods/open-deepfake-detection).",
            show_default=False,
        ),
    ] = None,
    revision: RevisionOption = None,
    synthetic_labels: SyntheticLabelsOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    batch_size: BatchSizeOption = "16",
    image_column: ImageColumnOption = None,
    split: SplitOption = None,
    limit: LimitOption = None,
    chunk_rows: ChunkRowsOption = 256,
    overwrite: Annotated[bool, overwrite_flag("an existing head folder")] = False,
) -> None:
    """Adapt the detector to your own data: fit a linear head on its image embeddings.

    Prints the held-out ROC-AUC and AP of the detector as it is and with the head, side by
    side: the held-out figure is the one to trust. Score with the head via `curate score
    --model MODEL --head OUTPUT` (or `DeepfakeScorer(model=..., head=...)`). Resumable: the
    extracted embeddings are kept in OUTPUT.work/ until the head is written.
    """

    def body() -> None:
        from curate.app.adapt import AdaptInterrupted, AdaptRequest, adapt

        request = AdaptRequest(
            source=source,
            output=output,
            label_column=label_column,
            label_map=label_map,
            eval_source=eval_source,
            holdout=holdout,
            seed=seed,
            model=model,
            revision=revision,
            synthetic_labels=synthetic_labels,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            image_column=image_column,
            split=split,
            limit=limit,
            chunk_rows=chunk_rows,
            overwrite=overwrite,
        )
        try:
            with ConsoleProgress("img") as progress:
                result = adapt(request, progress)
        except AdaptInterrupted as exc:
            stderr.print(
                f"Interrupted: the embeddings extracted so far are kept in {exc.work_dir}; run "
                "the same command again to resume."
            )
            raise typer.Exit(130) from None
        stdout.print(
            f"Fitted on {result.train_fake} Fake + {result.train_real} Real images "
            f"(C={result.C:.3g}, {result.folds}-fold cross-validation)",
            markup=False,
        )
        stdout.print(
            f"Held out: {result.eval_fake} Fake + {result.eval_real} Real images from "
            f"{result.heldout}",
            markup=False,
        )
        table = Table()
        table.add_column("scorer")
        table.add_column("ROC-AUC", justify="right")
        table.add_column("AP", justify="right")
        table.add_row("detector", _fmt(result.base.roc_auc), _fmt(result.base.average_precision))
        table.add_row(
            "adapted head", _fmt(result.head.roc_auc), _fmt(result.head.average_precision)
        )
        stdout.print(table)
        if result.unreadable or result.unlabelled:
            stdout.print(
                f"Left out: {result.unreadable} unreadable, {result.unlabelled} unlabelled rows",
                markup=False,
            )
        stdout.print(
            f"Head written to {result.output}; score with it: curate score SOURCE -o OUT.parquet "
            f"--model {result.model} --head {result.output}",
            markup=False,
            soft_wrap=True,
        )

    guarded(body)
