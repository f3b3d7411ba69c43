"""The `export_parquet` operator: write the kept samples, images embedded, to a Parquet file.

By default it exports what the last applied decision keeps (the rule `apply_deepfake_threshold`
recorded on the dataset), and says so. The path is checked in the form
(`curate.integrations.fiftyone.path_problem`): no folder is created, only a Parquet file curate
wrote is ever overwritten, and with the plugin secret / environment variable
`CURATE_EXPORT_ROOT` set, exports stay inside that folder. Progress streams to the App."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types
from fiftyone.operators.executor import ExecutionError

from curate.filtering import KEEP, DecisionRule
from curate.integrations import fiftyone as cfo
from curate.integrations.fiftyone.wording import count, num

from .forms import (
    ICONS,
    delegation_warning,
    execution_options,
    invalid,
    rule_from_params,
    rule_inputs,
    rule_params,
    rule_preview,
    run,
    text,
)

LABEL = "Export to Parquet"
# Above this many samples the form suggests a scheduled run (every image is read and copied).
DELEGATE_ABOVE = 5_000


def export_root(ctx) -> str | None:
    """The folder an administrator confined exports to: the plugin secret CURATE_EXPORT_ROOT
    (FiftyOne resolves it from the environment variable of that name unless a secrets
    store holds it), else None."""
    return cfo.export_root(ctx.secret(cfo.EXPORT_ROOT_ENV))


def applied_rule(ctx, target) -> cfo.AppliedDecision | None:
    """The decision last applied to the form's score field, if any."""
    return cfo.last_decision(target, text(ctx, "prob_field", cfo.PROB_FIELD))


class ExportParquet(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="export_parquet",
            label=LABEL,
            description="Write the kept samples, images embedded, with their scores to Parquet",
            **ICONS,
            dynamic=True,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_execution_options(self, ctx):
        return execution_options(ctx, len(ctx.target_view(require_flat=True)), DELEGATE_ABOVE)

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view(require_flat=True)
        only_kept = bool(ctx.params.get("only_kept", True))
        applied = applied_rule(ctx, target)
        default = applied.rule if applied else None
        # The summary comes first: how many samples, chosen by which decision.
        if only_kept:
            rule, counts = rule_preview(
                ctx, inputs, target, default, headline=lambda c: _headline(c, len(target))
            )
            if rule is not None:
                _which_decision(inputs, rule, applied)
        else:
            n = len(target)
            inputs.view(
                "preview",
                types.Notice(
                    label=f"All {count(n)} of the target will be exported, decided or not"
                ),
            )
        inputs.view_target(ctx, action_description="Export", require_flat=True)
        delegation_warning(inputs, len(target), DELEGATE_ABOVE, "export")
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
            description="Export only the samples the decision keeps (uncheck: the whole target)",
        )
        if only_kept:
            rule_inputs(ctx, inputs, target, default)
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
        # Returns a generator (not a generator function): the App gets its progress as it goes.
        target = ctx.target_view(require_flat=True)
        rule, prob_field = None, text(ctx, "prob_field", cfo.PROB_FIELD)
        if ctx.params.get("only_kept", True):
            applied = applied_rule(ctx, target)
            rule, prob_field = rule_from_params(ctx.params, applied.rule if applied else None)
        path = text(ctx, "path")
        kwargs = dict(rule=rule, prob_field=prob_field, fields=ctx.params.get("fields") or (),
                      overwrite=bool(ctx.params.get("overwrite", False)),
                      root=export_root(ctx))  # fmt: skip
        return _stream(ctx, target, path, kwargs)

    def __call__(
        self,
        sample_collection,
        path: str,
        only_kept: bool = True,
        threshold: float | None = None,
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
        export(dataset, "/data/kept.parquet")  # what the last applied decision keeps
        export(dataset, "/data/kept.parquet", threshold=0.5, remove_strong_evidence=True)

        Without `threshold`, the rule is the one last applied to `prob_field` (else the default,
        0.5). An immediate run returns the rows written in `.result["rows"]`; a file that
        cannot be written raises `curate.integrations.fiftyone.ExportPathError`
        (`FileExistsError` for an existing file without `overwrite`).
        """
        params = {"path": path, "only_kept": only_kept, "prob_field": prob_field,
                  "fields": list(fields or []), "overwrite": overwrite}  # fmt: skip
        if threshold is not None:
            params.update(
                rule_params(
                    threshold, review_band, unscored, remove_strong_evidence, review_conflicts
                )
            )
        try:
            result = run(self, sample_collection, params, delegate)
        except ExecutionError as exc:
            raise _export_error(exc) or exc from None
        if not delegate:
            import pyarrow.parquet as pq

            result.result = {"rows": pq.read_metadata(path).num_rows, "path": path}
        return result


def _headline(counts: dict[str, int], n: int) -> str:
    return f"{count(counts[KEEP])} of {n:,} will be exported: the kept ones"


def _which_decision(inputs, rule: DecisionRule, applied: cfo.AppliedDecision | None) -> None:
    """Say which decision the export follows: the one applied (when), or the default rule."""
    if applied is None:
        label = "No decision has been applied to these scores: exporting with the rule below"
    elif applied.rule == rule:
        label = f"Following the decision applied on {applied.when} to {count(applied.samples)}"
    else:
        was = f"threshold {num(applied.rule.threshold)}"
        if applied.rule.review_band:
            was += f", review band {num(applied.rule.review_band[0])}–"
            was += num(applied.rule.review_band[1])
        label = (
            f"Changed from the decision applied on {applied.when} ({was}): the tags and "
            "decision field on the samples do not match this export"
        )
    inputs.view("decision_source", types.Notice(label=label))


def _stream(ctx, target, path: str, kwargs: dict):
    """Export and forward its progress (the App's progress box, or a delegated run's status);
    a failure is shown in one line (progress box and notification) before it is raised."""
    try:
        for event in cfo.iter_export_parquet(target, path, **kwargs):
            label = event.label + (f" to {path}" if event.done else "")
            if ctx.delegated:
                ctx.set_progress(progress=event.fraction, label=label)
            else:
                yield ctx.trigger("set_progress", {"label": label, "progress": event.fraction})
    except (cfo.ExportPathError, FileExistsError, ValueError) as exc:
        if not ctx.delegated:
            message = f"Export failed, nothing was written: {exc}"
            yield ctx.trigger("set_progress", {"label": message})
            yield ctx.ops.notify(message, variant="error")
        raise
    if not ctx.delegated:
        yield ctx.ops.notify(f"Exported to {path}", variant="success")


def _export_error(exc: ExecutionError) -> Exception | None:
    """The export's own one-line error inside a FiftyOne ExecutionError (which carries the
    traceback), so Python callers get `ExportPathError` / `FileExistsError` back."""
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    for cls in (cfo.ExportPathError, FileExistsError):
        prefix = f"{cls.__module__}.{cls.__qualname__}: "
        short = f"{cls.__qualname__}: "
        for p in (prefix, short):
            if last.startswith(p):
                return cls(last[len(p) :])
    return None
