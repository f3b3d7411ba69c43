"""The `export_parquet` operator: write the kept samples, images embedded, to a Parquet file.

The path is checked in the form (`curate.integrations.fiftyone.path_problem`): no folder is
created, only a Parquet file curate wrote is ever overwritten, and with the plugin secret /
environment variable `CURATE_EXPORT_ROOT` set, exports stay inside that folder."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate.filtering import KEEP
from curate.integrations import fiftyone as cfo

from .forms import ICONS, invalid, rule_from_params, rule_inputs, rule_params, run, text

LABEL = "Export to Parquet"


def export_root(ctx) -> str | None:
    """The folder an administrator confined exports to: the plugin secret CURATE_EXPORT_ROOT
    (FiftyOne resolves it from the environment variable of that name unless a secrets
    store holds it), else None."""
    return cfo.export_root(ctx.secret(cfo.EXPORT_ROOT_ENV))


class ExportParquet(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="export_parquet",
            label=LABEL,
            description="Write the kept samples, images embedded, with their scores to Parquet",
            **ICONS,
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Export", require_flat=True)
        target = ctx.target_view(require_flat=True)
        root = export_root(ctx)
        where = f"inside {root}" if root else "in an existing folder"
        prop = inputs.str(
            "path",
            required=True,
            label="Parquet file",
            description=f"Where to write, {where}, e.g. kept.parquet (written atomically)",
        )
        inputs.bool(
            "overwrite",
            default=False,
            label="Overwrite an existing file",
            description="Only a Parquet file written by curate is ever replaced",
        )
        path = text(ctx, "path")
        if path:
            invalid(prop, cfo.path_problem(path, bool(ctx.params.get("overwrite", False)), root))
        inputs.bool(
            "only_kept",
            default=True,
            label="Only kept samples",
            description="Export only the samples the threshold keeps (uncheck: the whole target)",
        )
        if ctx.params.get("only_kept", True):
            rule, prob_field = rule_inputs(ctx, inputs, target)
            if rule is not None:
                n = cfo.count_decisions(target, rule, prob_field)[KEEP]
                inputs.view(
                    "preview", types.Notice(label=f"{n} of {len(target)} samples will be exported")
                )
        extra = types.DropdownView(multiple=True)
        for name in sorted(target.get_field_schema()):
            if name not in ("id", "filepath", "tags"):
                extra.add_choice(name, label=name)
        inputs.list(
            "fields",
            types.String(),
            required=False,
            label="Extra fields",
            description="Other sample fields to include as columns",
            view=extra,
        )
        return types.Property(inputs, view=types.View(label=LABEL))

    def execute(self, ctx):
        rule, prob_field = None, cfo.PROB_FIELD
        if ctx.params.get("only_kept", True):
            rule, prob_field = rule_from_params(ctx.params)

        def progress(rows: int) -> None:
            if ctx.delegated:
                ctx.set_progress(label=f"Wrote {rows} rows")

        path = text(ctx, "path")
        try:
            rows = cfo.export_parquet(
                ctx.target_view(require_flat=True),
                path,
                rule=rule,
                prob_field=prob_field,
                fields=ctx.params.get("fields") or (),
                overwrite=bool(ctx.params.get("overwrite", False)),
                root=export_root(ctx),
                progress=progress,
            )
        except (cfo.ExportPathError, FileExistsError) as exc:
            if ctx.delegated:
                raise  # the run is marked failed with this message
            # Returned, not raised: the App shows a raised error with its traceback.
            return {"error": str(exc), "path": path}
        return {"rows": rows, "path": path}

    def resolve_output(self, ctx):
        outputs = types.Object()
        error = (ctx.results or {}).get("error")
        if error:
            outputs.view("error", types.Error(label="Nothing was written", description=error))
            return types.Property(outputs, view=types.View(label="Export failed"))
        outputs.int("rows", label="Rows written")
        outputs.str("path", label="File")
        return types.Property(outputs, view=types.View(label="Exported"))

    def __call__(
        self,
        sample_collection,
        path: str,
        only_kept: bool = True,
        threshold: float = 0.5,
        review_band: tuple[float, float] | None = None,
        unscored: str = "separate",
        remove_strong_evidence: bool = False,
        review_conflicts: bool = False,
        prob_field: str = cfo.PROB_FIELD,
        fields: list[str] | None = None,
        overwrite: bool = False,
        delegate: bool = False,
    ):
        """Export from Python::

        export = foo.get_operator("@curate/deepfakes/export_parquet")
        export(dataset, "/data/kept.parquet", threshold=0.5)
        export(dataset, "/data/kept.parquet", threshold=0.5, remove_strong_evidence=True)

        Raises `curate.integrations.fiftyone.ExportPathError` when the file cannot be written.
        """
        params = {
            "path": path,
            "only_kept": only_kept,
            "prob_field": prob_field,
            **rule_params(
                threshold, review_band, unscored, remove_strong_evidence, review_conflicts
            ),
            "fields": list(fields or []),
            "overwrite": overwrite,
        }
        result = run(self, sample_collection, params, delegate)
        error = None if delegate else (result.result or {}).get("error")
        if error:
            raise cfo.ExportPathError(error)
        return result
