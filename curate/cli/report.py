"""`curate report`: score distribution and counts at candidate thresholds, without labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli.common import UsageError, guarded, stderr, stdout


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

        from curate import evaluation as ev
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

    guarded(body)
