"""The `detect_deepfakes` operator: score the target's images, write the scores onto them.

The model check in the form is `curate.integrations.fiftyone.model_problem` (configs, labels and
a weights file, in the App's words). The detector loads once the run starts, before the first
progress report, so the App shows "Executing..." (and no Done button) while it loads; a model
that still fails to load is reported in the progress box and a notification."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate.calibration import Calibration
from curate.detectors import default_model, resolve_device
from curate.integrations import fiftyone as cfo
from curate.integrations.fiftyone.wording import count
from curate.provenance import checker_from_options
from curate.scorer import DeepfakeScorer

from .forms import (
    ICONS,
    delegation_warning,
    execution_options,
    invalid,
    run,
    show_colors,
    text,
)

LABEL = "Detect deepfakes"
# Above this many samples to score the form suggests a scheduled run (on a CPU, a full-size
# detector scores about one image a second).
DELEGATE_ABOVE = 1_000
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

    def resolve_execution_options(self, ctx):
        return execution_options(ctx, len(_todo(ctx, ctx.target_view(require_flat=True))),
                                 DELEGATE_ABOVE)  # fmt: skip

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view(require_flat=True)
        if target.media_type != "image":
            message = f"Only images can be scored; this target holds {target.media_type}"
            invalid(inputs.view("media_type", types.Error(label=message)), message)
            return types.Property(inputs, view=types.View(label=LABEL))
        # The summary comes first: how many samples this run scores.
        todo = len(_todo(ctx, target))
        inputs.view(
            "summary",
            types.Notice(label=f"{todo:,} of {count(len(target))} will be scored"),
        )
        inputs.view_target(ctx, action_description="Score", require_flat=True)
        delegation_warning(inputs, todo, DELEGATE_ABOVE, "score")
        model_ok = _model_inputs(ctx, inputs)
        _score_field_inputs(ctx, inputs, target)
        prob_field = text(ctx, "prob_field", cfo.PROB_FIELD)
        before = cfo.scoring_settings(target, prob_field).get("curate.model")
        if model_ok and before and before != _recorded(_model(ctx)):
            keep = "are kept" if ctx.params.get("skip_existing") else "are overwritten"
            inputs.view(
                "other_model",
                types.Warning(
                    label=f"'{prob_field}' holds scores from {before}; existing ones {keep}"
                ),
            )
        return types.Property(inputs, view=types.View(label=LABEL))

    def execute(self, ctx):
        # A plain function that returns a generator: the detector loads inside it, before the
        # first progress report, so the App shows "Executing..." (no Done button) while it
        # loads, the load is not cut off by FiftyOne's limit on immediate requests, and a load
        # that fails is shown in the progress box before it is raised.
        scorer = DeepfakeScorer(
            model=_model(ctx),
            revision=text(ctx, "revision"),
            device=text(ctx, "device", "auto"),
            dtype=text(ctx, "dtype", "auto"),
            batch_size=int(ctx.params.get("batch_size", 16)),
            calibration=text(ctx, "calibration"),
            synthetic_labels=text(ctx, "synthetic_labels"),
            combine=text(ctx, "combine", "mean"),
            head=text(ctx, "head"),
            with_logits=bool(ctx.params.get("store_logits", False)),
            provenance=checker_from_options(
                bool(ctx.params.get("provenance", False)),
                bool(ctx.params.get("watermark", False)),
            ),
        )
        kwargs = dict(
            prob_field=text(ctx, "prob_field", cfo.PROB_FIELD),
            label_field=text(ctx, "label_field", cfo.LABEL_FIELD),
            error_field=text(ctx, "error_field", cfo.ERROR_FIELD),
            skip_existing=bool(ctx.params.get("skip_existing", False)),
            retry_failed=bool(ctx.params.get("retry_failed", False)),
        )
        target = ctx.target_view(require_flat=True)
        start = lambda: cfo.iter_score_samples(target, scorer, **kwargs)  # noqa: E731
        return _report_progress(ctx, start, scorer.model)

    def __call__(
        self,
        sample_collection,
        model: str | list[str] | None = None,
        revision: str | None = None,
        calibration: str | None = None,
        synthetic_labels: str | list[str] | None = None,
        combine: str = "mean",
        head: str | None = None,
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
        # an ensemble, or a head fitted by `curate adapt`:
        detect(dataset, model=["umm-maybe/AI-image-detector", "Organika/sdxl-detector"], combine="max")
        """
        if isinstance(model, (list, tuple)):
            model = ",".join(model)
        params = {
            "model": model or default_model(),
            "combine": combine,
            "head": head,
            "revision": revision,
            "calibration": calibration,
            "synthetic_labels": (
                ",".join(synthetic_labels)
                if isinstance(synthetic_labels, (list, tuple))
                else synthetic_labels
            ),
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


def _model(ctx) -> str | list[str]:
    """The form's model, or a list of models for an ensemble (comma-separated in the form);
    the default (CURATE_MODEL on the server, else the Hub default) only when no model was
    given at all: a blank one is an error in the form."""
    model = ctx.params.get("model")
    if model is None:
        return default_model()
    names = [m.strip() for m in str(model).split(",") if m.strip()]
    return names if len(names) > 1 else (names[0] if names else "")


def _members(model: str | list[str]) -> list[str]:
    return model if isinstance(model, list) else [model]


def _recorded(model: str | list[str]) -> str:
    """How `curate.model` records this model (a JSON list for an ensemble)."""
    return model if isinstance(model, str) else json.dumps(model)


def _todo(ctx, target):
    """The samples this run will score (all, or those without a score with Skip existing)."""
    if not ctx.params.get("skip_existing", False):
        return target
    return cfo.pending_samples(
        target,
        text(ctx, "prob_field", cfo.PROB_FIELD),
        text(ctx, "error_field", cfo.ERROR_FIELD),
        ctx.params.get("retry_failed", False),
    )


def _report_progress(ctx, start: Callable[[], Iterator[cfo.ScoreProgress]], model=None):
    """Start the run (`start()` checks the fields and loads the detector `model`) and forward
    each chunk's progress to the App (or the delegated run's status)."""
    event = None
    try:
        for event in start():
            if ctx.delegated:
                ctx.set_progress(progress=event.fraction, label=event.label)
            else:
                label = event.label
                if event.done < event.total:
                    label += " · closing this box does not stop the run"
                yield ctx.trigger("set_progress", {"label": label, "progress": event.fraction})
    except Exception as exc:
        if not ctx.delegated:
            # The App never hears of an exception raised while it streams: show it (and
            # what was scored so far) first; the raise still reaches the log and callers.
            what = "Scoring failed" if event is not None else "Could not start scoring"
            if event is None and model is not None:
                what += f" with {model}"
            yield ctx.trigger("set_progress", {"label": f"{what}: {exc}"})
            yield ctx.ops.notify(f"{what}: {exc}", variant="error")
            yield ctx.trigger("reload_dataset")
        raise
    if not ctx.delegated:
        if event is None:
            yield ctx.trigger("set_progress", {"label": "Nothing to score", "progress": 1.0})
        yield ctx.trigger("reload_dataset")
        colors = show_colors(ctx)
        if colors is not None:
            yield colors


def _model_inputs(ctx, inputs) -> bool:
    ok = True
    prop = inputs.str(
        "model",
        default=default_model(),
        required=False,
        label="Model",
        description="A Hugging Face Hub id (owner/name) or a checkpoint folder on the server, "
        "or several, comma-separated, for an ensemble; preset to the server's default, "
        f"{default_model()}",
    )
    inputs.str(
        "revision",
        required=False,
        label="Revision",
        description="Hub branch, tag or commit to pin (optional)",
    )
    labels = inputs.str(
        "synthetic_labels",
        required=False,
        label="Synthetic labels",
        description="Only for a checkpoint whose class names curate cannot read as "
        "synthetic/real: the classes that mean synthetic, comma-separated",
    )
    names = text(ctx, "synthetic_labels")
    members = _members(_model(ctx))
    problem = None
    for member in members:
        problem = cfo.model_problem(member, text(ctx, "revision"), names)
        if problem:
            break
    if len(members) > 1:
        inputs.enum(
            "combine",
            ["mean", "max", "logit_mean"],
            default="mean",
            label="Combine",
            description="How the ensemble's scores combine: the mean of the members' "
            "probabilities, the highest, or the mean of their logit gaps",
        )
        if problem is None and text(ctx, "revision"):
            problem = "Revision pins one model; leave it empty for an ensemble"
    head = inputs.str(
        "head",
        required=False,
        label="Adapted head",
        description="Optional: a head folder from `curate adapt` for this model (one model only)",
    )
    if text(ctx, "head") and len(members) > 1:
        ok = invalid(head, "An adapted head belongs to one model, not an ensemble") and ok
    about_labels = bool(problem and names and "'Synthetic labels'" in problem)
    ok = invalid(labels if about_labels else prop, problem) and ok

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
