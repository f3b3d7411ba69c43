"""The `detect_deepfakes` operator: score the target's images, write the scores onto them."""

from __future__ import annotations

from collections.abc import Iterator

import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate.calibration import Calibration
from curate.detectors import default_model, resolve_device
from curate.integrations import fiftyone as cfo
from curate.provenance import checker_from_options
from curate.scorer import DeepfakeScorer

from .forms import ICONS, invalid, run, text

LABEL = "Detect deepfakes"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class DetectDeepfakes(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="detect_deepfakes",
            label=LABEL,
            description="Score every image as Fake/Real with a SigLIP deepfake detector",
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
            invalid(inputs.view("media_type", types.Error(label=message)), message)
            return types.Property(inputs, view=types.View(label=LABEL))
        ready = _model_inputs(ctx, inputs)
        ready = _score_field_inputs(ctx, inputs, target) and ready
        if ready:
            prob_field = text(ctx, "prob_field", cfo.PROB_FIELD)
            todo = target
            if ctx.params.get("skip_existing", False):
                todo = cfo.pending_samples(
                    target,
                    prob_field,
                    text(ctx, "error_field", cfo.ERROR_FIELD),
                    ctx.params.get("retry_failed", False),
                )
            inputs.view(
                "summary",
                types.Notice(label=f"{len(todo)} of {len(target)} samples will be scored"),
            )
            before = cfo.scoring_settings(target, prob_field).get("curate.model")
            if before and before != text(ctx, "model", default_model()):
                keep = "are kept" if ctx.params.get("skip_existing") else "are overwritten"
                inputs.view(
                    "other_model",
                    types.Warning(
                        label=f"'{prob_field}' holds scores from {before}; existing ones {keep}"
                    ),
                )
        return types.Property(inputs, view=types.View(label=LABEL))

    def execute(self, ctx):
        # A plain function that returns a generator, not a generator function: the field
        # checks and the model load run in this call, so a model that cannot load fails the
        # operation here, where FiftyOne reports it (the App shows it in the operator's
        # prompt, a delegated run is marked failed). Raised inside the generator, it would
        # only cut the App's progress stream and leave its progress box at 0 % forever.
        scorer = DeepfakeScorer(
            model=text(ctx, "model", default_model()),
            revision=text(ctx, "revision"),
            device=text(ctx, "device", "auto"),
            dtype=text(ctx, "dtype", "auto"),
            batch_size=int(ctx.params.get("batch_size", 16)),
            calibration=text(ctx, "calibration"),
            with_logits=bool(ctx.params.get("store_logits", False)),
            provenance=checker_from_options(
                bool(ctx.params.get("provenance", False)),
                bool(ctx.params.get("watermark", False)),
            ),
        )
        events = cfo.iter_score_samples(
            ctx.target_view(require_flat=True),
            scorer,
            prob_field=text(ctx, "prob_field", cfo.PROB_FIELD),
            label_field=text(ctx, "label_field", cfo.LABEL_FIELD),
            error_field=text(ctx, "error_field", cfo.ERROR_FIELD),
            skip_existing=bool(ctx.params.get("skip_existing", False)),
            retry_failed=bool(ctx.params.get("retry_failed", False)),
        )
        return _report_progress(ctx, events)

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
        return run(self, sample_collection, params, delegate)


def _report_progress(ctx, events: Iterator[cfo.ScoreProgress]):
    """Forward each chunk's progress to the App (or the delegated run's status)."""
    try:
        for event in events:
            if ctx.delegated:
                ctx.set_progress(progress=event.fraction, label=event.label)
            else:
                yield ctx.trigger(
                    "set_progress", {"label": event.label, "progress": event.fraction}
                )
    except Exception as exc:
        if not ctx.delegated:
            # The App never hears of an exception raised while it streams: show it (and
            # what was scored so far) first; the raise still reaches the log and callers.
            yield ctx.trigger("set_progress", {"label": f"Scoring failed: {exc}"})
            yield ctx.ops.notify(f"Scoring failed: {exc}", variant="error")
            yield ctx.trigger("reload_dataset")
        raise
    if not ctx.delegated:
        yield ctx.trigger("reload_dataset")


def _model_inputs(ctx, inputs) -> bool:
    ok = True
    prop = inputs.str(
        "model",
        default=default_model(),
        required=False,
        label="Model",
        description="Hugging Face Hub id or local directory of a Fake/Real SigLIP checkpoint",
    )
    model = text(ctx, "model", default_model())
    inputs.str(
        "revision",
        required=False,
        label="Revision",
        description="Hub branch, tag or commit to pin (optional)",
    )
    ok = invalid(prop, cfo.model_problem(model, text(ctx, "revision"))) and ok

    prop = inputs.str(
        "calibration",
        required=False,
        label="Calibration file",
        description="Optional calibration.json from `curate eval --fit-calibration` (temperature/Platt)",
    )
    calibration = text(ctx, "calibration")
    if calibration:
        try:
            Calibration.load(calibration)
        except ValueError as exc:
            ok = invalid(prop, str(exc)) and ok

    prop = inputs.int(
        "batch_size", default=16, min=1, label="Batch size", description="Images per forward pass"
    )
    batch_size = ctx.params.get("batch_size", 16)
    if not isinstance(batch_size, int) or batch_size < 1:
        ok = invalid(prop, f"batch size must be a whole number >= 1, got {batch_size!r}") and ok

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
        resolve_device(text(ctx, "device", "auto"))
    except ValueError as exc:
        ok = invalid(prop, str(exc)) and ok

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
        name = text(ctx, param, default)
        names.append(name)
        ok = invalid(prop, cfo.field_problem(target, name, kind)) and ok
    if len(set(names)) != len(names):
        message = "The probability, label and error fields must have three different names"
        invalid(inputs.view("field_clash", types.Error(label=message)), message)
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
