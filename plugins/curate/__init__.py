"""curate's FiftyOne operators: detect synthetic images, act on the scores, export to Parquet.

Thin front ends over `curate.integrations.fiftyone`; every algorithm lives in `curate`.
"""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate.calibration import Calibration
from curate.detectors import default_model, resolve_device
from curate.filtering import KEEP, REMOVE, REVIEW, UNSCORED, DecisionRule
from curate.integrations import fiftyone as cfo
from curate.provenance import checker_from_options
from curate.scorer import DeepfakeScorer

ICON = "/assets/icon.svg"
ICONS = {"light_icon": "/assets/icon-light.svg", "dark_icon": "/assets/icon-dark.svg"}
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _run(operator: foo.Operator, sample_collection, params: dict, delegate: bool):
    ctx = {"view": sample_collection.view(), "params": params}
    return foo.execute_operator(operator.uri, ctx, request_delegation=delegate)


def _text(ctx, name: str, default: str | None = None) -> str | None:
    value = ctx.params.get(name, default)
    if isinstance(value, str):
        value = value.strip()
    return value or default


def _invalid(prop, message: str | None) -> bool:
    if message:
        prop.invalid = True
        prop.error_message = message
    return not message


# -- detect_deepfakes --------------------------------------------------------------------------
class DetectDeepfakes(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="detect_deepfakes",
            label="Detect deepfakes",
            description="Score every image as Fake/Real with a SigLIP deepfake detector",
            icon=ICON,
            **ICONS,
            dynamic=True,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Score", require_flat=True)
        target = ctx.target_view(require_flat=True)
        if target.media_type != "image":
            message = f"Only images can be scored; this target holds {target.media_type}"
            _invalid(inputs.view("media_type", types.Error(label=message)), message)
            return types.Property(inputs, view=types.View(label="Detect deepfakes"))
        ready = _model_inputs(ctx, inputs)
        ready = _score_field_inputs(ctx, inputs, target) and ready
        if ready:
            todo = target
            if ctx.params.get("skip_existing", False):
                todo = cfo.pending_samples(
                    target,
                    _text(ctx, "prob_field", cfo.PROB_FIELD),
                    _text(ctx, "error_field", cfo.ERROR_FIELD),
                    ctx.params.get("retry_failed", False),
                )
            inputs.view(
                "summary",
                types.Notice(label=f"{len(todo)} of {len(target)} samples will be scored"),
            )
            prob_field = _text(ctx, "prob_field", cfo.PROB_FIELD)
            before = cfo.scoring_settings(target, prob_field).get("curate.model")
            if before and before != _text(ctx, "model", default_model()):
                keep = "are kept" if ctx.params.get("skip_existing") else "are overwritten"
                inputs.view(
                    "other_model",
                    types.Warning(
                        label=f"'{prob_field}' holds scores from {before}; existing ones {keep}"
                    ),
                )
        return types.Property(inputs, view=types.View(label="Detect deepfakes"))

    def execute(self, ctx):
        scorer = DeepfakeScorer(
            model=_text(ctx, "model", default_model()),
            revision=_text(ctx, "revision"),
            device=_text(ctx, "device", "auto"),
            dtype=_text(ctx, "dtype", "auto"),
            batch_size=int(ctx.params.get("batch_size", 16)),
            calibration=_text(ctx, "calibration"),
            with_logits=bool(ctx.params.get("store_logits", False)),
            provenance=checker_from_options(
                bool(ctx.params.get("provenance", False)),
                bool(ctx.params.get("watermark", False)),
            ),
        )
        events = cfo.iter_score_samples(
            ctx.target_view(require_flat=True),
            scorer,
            prob_field=_text(ctx, "prob_field", cfo.PROB_FIELD),
            label_field=_text(ctx, "label_field", cfo.LABEL_FIELD),
            error_field=_text(ctx, "error_field", cfo.ERROR_FIELD),
            skip_existing=bool(ctx.params.get("skip_existing", False)),
            retry_failed=bool(ctx.params.get("retry_failed", False)),
        )
        if not ctx.delegated:
            yield ctx.trigger("set_progress", {"label": "Loading the detector", "progress": 0})
        for event in events:
            if ctx.delegated:
                ctx.set_progress(progress=event.fraction, label=event.label)
            else:
                yield ctx.trigger(
                    "set_progress", {"label": event.label, "progress": event.fraction}
                )
        if not ctx.delegated:
            yield ctx.trigger("reload_dataset")

    def __call__(
        self,
        sample_collection,
        model: str | None = None,
        revision: str | None = None,
        calibration: str | None = None,
        batch_size: int = 16,
        device: str = "auto",
        dtype: str = "auto",
        prob_field: str = cfo.PROB_FIELD,
        label_field: str = cfo.LABEL_FIELD,
        error_field: str = cfo.ERROR_FIELD,
        store_logits: bool = False,
        skip_existing: bool = False,
        retry_failed: bool = False,
        provenance: bool = False,
        watermark: bool = False,
        delegate: bool = False,
    ):
        """Score `sample_collection` (a dataset or view) from Python::

        import fiftyone.operators as foo

        detect = foo.get_operator("@curate/deepfakes/detect_deepfakes")
        detect(dataset, model="prithivMLmods/open-deepfake-detection", batch_size=32)
        # or queue it for `fiftyone delegated launch`:
        detect(dataset.match_tags("new"), skip_existing=True, delegate=True)
        """
        params = {
            "model": model or default_model(),
            "revision": revision,
            "calibration": calibration,
            "batch_size": batch_size,
            "device": device,
            "dtype": dtype,
            "prob_field": prob_field,
            "label_field": label_field,
            "error_field": error_field,
            "store_logits": store_logits,
            "skip_existing": skip_existing,
            "retry_failed": retry_failed,
            "provenance": provenance,
            "watermark": watermark,
        }
        return _run(self, sample_collection, params, delegate)


def _model_inputs(ctx, inputs) -> bool:
    ok = True
    prop = inputs.str(
        "model",
        default=default_model(),
        required=False,
        label="Model",
        description="Hugging Face Hub id or local directory of a Fake/Real SigLIP checkpoint",
    )
    model = _text(ctx, "model", default_model())
    inputs.str(
        "revision",
        required=False,
        label="Revision",
        description="Hub branch, tag or commit to pin (optional)",
    )
    ok = _invalid(prop, cfo.model_problem(model, _text(ctx, "revision"))) and ok

    prop = inputs.str(
        "calibration",
        required=False,
        label="Calibration file",
        description="Optional calibration.json from `curate eval --fit-calibration` (temperature/Platt)",
    )
    calibration = _text(ctx, "calibration")
    if calibration:
        try:
            Calibration.load(calibration)
        except ValueError as exc:
            ok = _invalid(prop, str(exc)) and ok

    prop = inputs.int(
        "batch_size", default=16, min=1, label="Batch size", description="Images per forward pass"
    )
    batch_size = ctx.params.get("batch_size", 16)
    if not isinstance(batch_size, int) or batch_size < 1:
        ok = _invalid(prop, f"batch size must be a whole number >= 1, got {batch_size!r}") and ok

    devices = types.DropdownView()
    for d in DEVICES:
        devices.add_choice(d, label=d)
    prop = inputs.enum(
        "device",
        devices.values(),
        default="auto",
        label="Device",
        description="auto picks cuda > mps > cpu",
        view=devices,
    )
    try:
        resolve_device(_text(ctx, "device", "auto"))
    except ValueError as exc:
        ok = _invalid(prop, str(exc)) and ok

    dtypes = types.DropdownView()
    for d in DTYPES:
        dtypes.add_choice(d, label=d)
    inputs.enum(
        "dtype",
        dtypes.values(),
        default="auto",
        label="Precision",
        description="auto: bfloat16 on a GPU, float32 on CPU (see the curate README, Fidelity)",
        view=dtypes,
    )
    return ok


def _score_field_inputs(ctx, inputs, target) -> bool:
    ok = True
    fields = (
        ("prob_field", cfo.PROB_FIELD, "prob", "Probability field", "float: P(synthetic)"),
        ("label_field", cfo.LABEL_FIELD, "label", "Label field", "Classification Fake/Real"),
        ("error_field", cfo.ERROR_FIELD, "error", "Error field", "why an image was unreadable"),
    )
    names = []
    for param, default, kind, label, description in fields:
        prop = inputs.str(param, default=default, label=label, description=description)
        name = _text(ctx, param, default)
        names.append(name)
        ok = _invalid(prop, cfo.field_problem(target, name, kind)) and ok
    if len(set(names)) != len(names):
        message = "The probability, label and error fields must have three different names"
        _invalid(inputs.view("field_clash", types.Error(label=message)), message)
        ok = False
    inputs.bool(
        "store_logits",
        default=False,
        label="Store logits",
        description="Also store the raw logits on the Classification",
    )
    inputs.bool(
        "provenance",
        default=False,
        label="Provenance evidence",
        description="Also read C2PA credentials and generator metadata from each file "
        "(fields provenance, provenance_synthetic, provenance_strong, provenance_detail)",
    )
    if ctx.params.get("provenance", False):
        inputs.bool(
            "watermark",
            default=False,
            label="Invisible watermark",
            description="Also look for the SD/SDXL/FLUX watermark (decodes each image again)",
        )
    inputs.bool(
        "skip_existing",
        default=False,
        label="Skip existing",
        description="Only score samples without a score or an error (resume an interrupted run)",
    )
    if ctx.params.get("skip_existing", False):
        inputs.bool(
            "retry_failed",
            default=False,
            label="Retry failed",
            description="Also re-score samples whose image could not be read last time",
        )
    return ok


# -- apply_deepfake_threshold ------------------------------------------------------------------
class ApplyDeepfakeThreshold(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="apply_deepfake_threshold",
            label="Act on deepfake scores",
            description="Tag, keep as a saved view, or delete the samples scored as synthetic",
            icon=ICON,
            **ICONS,
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Apply the threshold to", require_flat=True)
        target = ctx.target_view(require_flat=True)
        rule, prob_field = _rule_inputs(ctx, inputs, target)
        if rule is not None:
            _action_inputs(ctx, inputs, target, rule, prob_field)
        return types.Property(inputs, view=types.View(label="Act on deepfake scores"))

    def execute(self, ctx):
        rule, prob_field = _rule_from_params(ctx.params)
        summary = cfo.apply_decision(
            ctx.target_view(require_flat=True),
            rule,
            action=ctx.params.get("action", "tag"),
            prob_field=prob_field,
            remove_tag=_text(ctx, "remove_tag", cfo.REMOVE_TAG),
            review_tag=_text(ctx, "review_tag", cfo.REVIEW_TAG),
            unscored_tag=_text(ctx, "unscored_tag", cfo.UNSCORED_TAG),
            view_name=_text(ctx, "view_name", cfo.KEPT_VIEW),
            confirm_delete=bool(ctx.params.get("confirm_delete", False)),
        )
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return {
            **{f"n_{o}": n for o, n in summary.counts.items()},
            "action": summary.action,
            "deleted": summary.deleted,
            "saved_view": summary.saved_view,
            "tags": ", ".join(f"{o}: {t}" for o, t in summary.tags.items()),
        }

    def resolve_output(self, ctx):
        outputs = types.Object()
        for o, label in ((KEEP, "Kept"), (REMOVE, "Synthetic"), (REVIEW, "To review"),
                         (UNSCORED, "Unscored")):  # fmt: skip
            outputs.int(f"n_{o}", label=label)
        outputs.int("deleted", label="Deleted")
        outputs.str("saved_view", label="Saved view")
        outputs.str("tags", label="Tags applied")
        return types.Property(outputs, view=types.View(label="Done"))

    def __call__(
        self,
        sample_collection,
        threshold: float = 0.5,
        review_band: tuple[float, float] | None = None,
        unscored: str = "separate",
        action: str = "tag",
        prob_field: str = cfo.PROB_FIELD,
        remove_tag: str = cfo.REMOVE_TAG,
        review_tag: str = cfo.REVIEW_TAG,
        unscored_tag: str = cfo.UNSCORED_TAG,
        view_name: str = cfo.KEPT_VIEW,
        confirm_delete: bool = False,
        remove_strong_evidence: bool = False,
        review_conflicts: bool = False,
        delegate: bool = False,
    ):
        """Act on the scores from Python::

        act = foo.get_operator("@curate/deepfakes/apply_deepfake_threshold")
        act(dataset, threshold=0.7, review_band=(0.4, 0.9))        # tag
        act(dataset, threshold=0.7, action="delete", confirm_delete=True)
        """
        params = {
            "prob_field": prob_field,
            "threshold": threshold,
            "use_review_band": review_band is not None,
            "review_low": review_band[0] if review_band else None,
            "review_high": review_band[1] if review_band else None,
            "unscored": unscored,
            "action": action,
            "remove_tag": remove_tag,
            "review_tag": review_tag,
            "unscored_tag": unscored_tag,
            "view_name": view_name,
            "confirm_delete": confirm_delete,
            "remove_strong_evidence": remove_strong_evidence,
            "review_conflicts": review_conflicts,
        }
        return _run(self, sample_collection, params, delegate)


def _rule_from_params(params: dict) -> tuple[DecisionRule, str]:
    threshold = cfo.parse_float(params.get("threshold", 0.5), "threshold")
    band = None
    if params.get("use_review_band"):
        band = (
            cfo.parse_float(params.get("review_low"), "review band low"),
            cfo.parse_float(params.get("review_high"), "review band high"),
        )
    rule = DecisionRule(
        threshold,
        review_band=band,
        unscored=params.get("unscored", "separate"),
        remove_strong_evidence=bool(params.get("remove_strong_evidence", False)),
        review_conflicts=bool(params.get("review_conflicts", False)),
    )
    return rule, (params.get("prob_field") or cfo.PROB_FIELD)


def _float_fields(target) -> list[str]:
    schema = target.get_field_schema(ftype=fo.FloatField)
    return sorted(schema)


def _rule_inputs(ctx, inputs, target) -> tuple[DecisionRule | None, str]:
    fields = _float_fields(target)
    choices = types.DropdownView()
    for name in fields:
        choices.add_choice(name, label=name)
    default = cfo.PROB_FIELD if cfo.PROB_FIELD in fields else (fields[0] if fields else None)
    prop = inputs.enum(
        "prob_field",
        choices.values(),
        default=default,
        required=False,
        label="Score field",
        description="The float field written by detect_deepfakes",
        view=choices,
    )
    if not fields:
        _invalid(prop, "No float field on this dataset: run 'Detect deepfakes' first")
        return None, cfo.PROB_FIELD
    thr = inputs.float(
        "threshold",
        default=0.5,
        min=0.0,
        max=1.0,
        required=False,
        label="Threshold",
        description="Samples with a fake probability at or above this are synthetic",
    )
    inputs.bool(
        "use_review_band",
        default=False,
        label="Review band",
        description="Send samples between two thresholds to human review instead",
    )
    low = high = None
    if ctx.params.get("use_review_band"):
        low = inputs.float("review_low", default=0.3, min=0.0, max=1.0, label="Review from")
        high = inputs.float("review_high", default=0.7, min=0.0, max=1.0, label="Remove from")
    unscored = types.RadioGroup()
    unscored.add_choice(
        "separate", label="Tag for review", description="Unreadable images get their own tag"
    )
    unscored.add_choice("keep", label="Keep", description="Treat unreadable images as kept")
    unscored.add_choice("drop", label="Remove", description="Treat unreadable images as synthetic")
    inputs.enum(
        "unscored", unscored.values(), default="separate", label="Unscored samples", view=unscored
    )
    if target.has_field("provenance_strong"):
        inputs.bool(
            "remove_strong_evidence",
            default=False,
            label="Remove on strong provenance evidence",
            description="A valid C2PA AI-generation claim or a matched watermark removes the "
            "sample whatever its score",
        )
        inputs.bool(
            "review_conflicts",
            default=False,
            label="Review evidence/score conflicts",
            description="Samples whose provenance evidence disagrees with the score go to review",
        )
    try:
        rule, prob_field = _rule_from_params(
            {"threshold": 0.5, "review_low": 0.3, "review_high": 0.7, **_non_null(ctx.params)}
        )
    except ValueError as exc:
        message = str(exc)
        target_prop = thr
        if low is not None and not message.startswith("threshold"):
            target_prop = high if "high" in message or "lo <" in message else low
        _invalid(target_prop, message)
        return None, cfo.PROB_FIELD
    return rule, prob_field


def _non_null(params: dict) -> dict:
    return {k: v for k, v in params.items() if v is not None}


def _action_inputs(ctx, inputs, target, rule: DecisionRule, prob_field: str) -> None:
    counts = cfo.count_decisions(target, rule, prob_field)
    inputs.view(
        "preview",
        types.Notice(
            label=(
                f"{counts[KEEP]} kept, {counts[REMOVE]} synthetic, {counts[REVIEW]} to review, "
                f"{counts[UNSCORED]} unscored"
            )
        ),
    )
    actions = types.RadioGroup()
    actions.add_choice("tag", label="Tag", description="Tag synthetic samples (nothing is removed)")
    actions.add_choice(
        "save_view", label="Save view", description="Save the kept samples as a view"
    )
    actions.add_choice(
        "delete", label="Delete", description="Delete synthetic samples from the dataset"
    )
    inputs.enum("action", actions.values(), default="tag", label="Action", view=actions)
    action = ctx.params.get("action", "tag")
    if action == "tag":
        inputs.str("remove_tag", default=cfo.REMOVE_TAG, label="Synthetic tag")
    if action == "save_view":
        inputs.str("view_name", default=cfo.KEPT_VIEW, label="View name")
    if rule.can_review:
        inputs.str("review_tag", default=cfo.REVIEW_TAG, label="Review tag")
    if rule.unscored == "separate":
        inputs.str("unscored_tag", default=cfo.UNSCORED_TAG, label="Unscored tag")
    if action == "delete":
        inputs.view(
            "delete_warning",
            types.Warning(label=f"{counts[REMOVE]} samples will be permanently deleted"),
        )
        prop = inputs.bool(
            "confirm_delete",
            default=False,
            required=False,
            label="I understand: delete them",
            view=types.CheckboxView(),
        )
        if not ctx.params.get("confirm_delete", False):
            _invalid(prop, "Tick the box to confirm the deletion")


# -- export_parquet ----------------------------------------------------------------------------
class ExportParquet(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="export_parquet",
            label="Export to Parquet (deepfake-filtered)",
            description="Write the kept samples, images embedded, with their scores to Parquet",
            icon=ICON,
            **ICONS,
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Export", require_flat=True)
        target = ctx.target_view(require_flat=True)
        prop = inputs.str(
            "path",
            required=True,
            label="Parquet file",
            description="Where to write, e.g. /data/kept.parquet (written atomically)",
        )
        inputs.bool("overwrite", default=False, label="Overwrite an existing file")
        path = _text(ctx, "path")
        if path:
            _invalid(prop, cfo.path_problem(path, bool(ctx.params.get("overwrite", False))))
        inputs.bool(
            "only_kept",
            default=True,
            label="Only kept samples",
            description="Export only the samples the threshold keeps (uncheck: the whole target)",
        )
        rule = None
        if ctx.params.get("only_kept", True):
            rule, prob_field = _rule_inputs(ctx, inputs, target)
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
        return types.Property(inputs, view=types.View(label="Export to Parquet"))

    def execute(self, ctx):
        rule, prob_field = None, cfo.PROB_FIELD
        if ctx.params.get("only_kept", True):
            rule, prob_field = _rule_from_params(ctx.params)

        def progress(rows: int) -> None:
            if ctx.delegated:
                ctx.set_progress(label=f"Wrote {rows} rows")

        rows = cfo.export_parquet(
            ctx.target_view(require_flat=True),
            _text(ctx, "path"),
            rule=rule,
            prob_field=prob_field,
            fields=ctx.params.get("fields") or (),
            overwrite=bool(ctx.params.get("overwrite", False)),
            progress=progress,
        )
        return {"rows": rows, "path": _text(ctx, "path")}

    def resolve_output(self, ctx):
        outputs = types.Object()
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
        prob_field: str = cfo.PROB_FIELD,
        fields: list[str] | None = None,
        overwrite: bool = False,
        delegate: bool = False,
    ):
        """Export from Python::

        export = foo.get_operator("@curate/deepfakes/export_parquet")
        export(dataset, "/data/kept.parquet", threshold=0.5)
        """
        params = {
            "path": path,
            "only_kept": only_kept,
            "prob_field": prob_field,
            "threshold": threshold,
            "use_review_band": review_band is not None,
            "review_low": review_band[0] if review_band else None,
            "review_high": review_band[1] if review_band else None,
            "unscored": unscored,
            "fields": list(fields or []),
            "overwrite": overwrite,
        }
        return _run(self, sample_collection, params, delegate)


def register(p):
    p.register(DetectDeepfakes)
    p.register(ApplyDeepfakeThreshold)
    p.register(ExportParquet)
