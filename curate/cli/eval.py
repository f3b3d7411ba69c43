"""`curate eval`: measure the detector on a labelled sample and choose a threshold.

Options -> `curate.app.evaluate.EvalRequest` -> `curate.app.evaluate.evaluate` -> printed
summary (`curate.evaluation.render.console_summary`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from curate import schema
from curate.cli.common import (
    BatchSizeOption,
    CombineOption,
    CompileOption,
    ConsoleProgress,
    DeviceOption,
    DtypeOption,
    HeadOption,
    ImageColumnOption,
    LabelColumnOption,
    LabelMapOption,
    LimitOption,
    ModelOption,
    OutDirOption,
    QuantizeOption,
    RevisionOption,
    SplitOption,
    SyntheticLabelsOption,
    compile_mode,
    guarded,
    model_ids,
    overwrite_flag,
    stdout,
)


class Calibrate(str, Enum):
    none = "none"
    temperature = "temperature"
    platt = "platt"


def eval_(
    source: Annotated[
        str,
        typer.Argument(
            help="Labelled images: a folder with fake/ and real/ subfolders, Parquet file(s) "
            "(scored by `curate score` or not), a save_to_disk directory or a Hub dataset.",
            show_default=False,
        ),
    ],
    out_dir: OutDirOption,
    label_column: LabelColumnOption = "label",
    label_map: LabelMapOption = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Cut for the card-style table.")
    ] = schema.LABEL_THRESHOLD,
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
    model: ModelOption = None,
    revision: RevisionOption = None,
    combine: CombineOption = "mean",
    head: HeadOption = None,
    synthetic_labels: SyntheticLabelsOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    compile: CompileOption = "auto",
    quantize: QuantizeOption = None,
    batch_size: BatchSizeOption = "16",
    image_column: ImageColumnOption = None,
    split: SplitOption = None,
    limit: LimitOption = None,
    overwrite: Annotated[bool, overwrite_flag("a report already in OUT_DIR")] = False,
) -> None:
    """Measure the detector on your own labelled sample and choose a threshold from evidence.

    Prints the model card's classification table plus ROC-AUC, AP, TPR at 1 %/5 % FPR and ECE;
    writes report.md, report.json, scores.parquet and plots (hist, roc, pr, reliability) to
    OUT_DIR, and calibration.json with --fit-calibration. The chosen threshold (and review
    band) go straight into `curate filter`, the calibration into `curate score --calibration`.
    """

    def body() -> None:
        from curate.app.evaluate import EvalRequest, evaluate
        from curate.evaluation.render import console_summary
        from curate.evaluation.report import EvalOptions

        options = EvalOptions(
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
        request = EvalRequest(
            source=source,
            out_dir=out_dir,
            label_column=label_column,
            label_map=label_map,
            group_column=group_column,
            options=options,
            calibration=calibration,
            rescore=rescore,
            robustness=robustness,
            perturbations=perturb,
            probe_limit=probe_limit,
            model=model_ids(model),
            revision=revision,
            combine=combine,
            head=head,
            synthetic_labels=synthetic_labels,
            device=device,
            dtype=dtype,
            compile=compile_mode(compile),
            quantize=quantize,
            batch_size=batch_size,
            image_column=image_column,
            split=split,
            limit=limit,
            overwrite=overwrite,
        )
        with ConsoleProgress("img") as progress:
            result = evaluate(request, progress)
        stdout.print(console_summary(result.report), markup=False, highlight=False, soft_wrap=True)
        stdout.print(f"Wrote {len(result.files)} files to {result.out_dir}", markup=False)

    guarded(body)
