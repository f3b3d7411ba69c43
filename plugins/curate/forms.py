"""What the plugin's operators share: reading form values, marking fields invalid, running an
operator from Python, and the decision-rule part of a form (threshold, band, unscored,
provenance options) turned into a `curate.filtering.DecisionRule`."""

from __future__ import annotations

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate import schema
from curate.filtering import DecisionRule
from curate.integrations import fiftyone as cfo

ICON = "/assets/icon.svg"
ICONS = {"icon": ICON, "light_icon": "/assets/icon-light.svg", "dark_icon": "/assets/icon-dark.svg"}


def run(operator: foo.Operator, sample_collection, params: dict, delegate: bool):
    """Execute `operator` on a dataset or view from Python, immediately or queued."""
    ctx = {"view": sample_collection.view(), "params": params}
    return foo.execute_operator(operator.uri, ctx, request_delegation=delegate)


def text(ctx, name: str, default: str | None = None) -> str | None:
    """A string parameter, stripped; `default` when absent or blank."""
    value = ctx.params.get(name, default)
    if isinstance(value, str):
        value = value.strip()
    return value or default


def invalid(prop, message: str | None) -> bool:
    """Mark `prop` invalid with `message` (if any); True when there was nothing to mark."""
    if message:
        prop.invalid = True
        prop.error_message = message
    return not message


def non_null(params: dict) -> dict:
    return {k: v for k, v in params.items() if v is not None}


def rule_params(
    threshold: float,
    review_band: tuple[float, float] | None,
    unscored: str,
    remove_strong_evidence: bool,
    review_conflicts: bool,
) -> dict:
    """The form parameters of a rule, as the operators' `__call__` methods pass them."""
    return {
        "threshold": threshold,
        "use_review_band": review_band is not None,
        "review_low": review_band[0] if review_band else None,
        "review_high": review_band[1] if review_band else None,
        "unscored": unscored,
        "remove_strong_evidence": remove_strong_evidence,
        "review_conflicts": review_conflicts,
    }


def rule_from_params(params: dict) -> tuple[DecisionRule, str]:
    """(the DecisionRule, the score field) a form's parameters describe; ValueError if bad."""
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


def rule_inputs(ctx, inputs, target) -> tuple[DecisionRule | None, str]:
    """Add the rule's fields to `inputs`; the rule they describe, or None when invalid."""
    fields = sorted(target.get_field_schema(ftype=fo.FloatField))
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
        invalid(prop, "No float field on this dataset: run 'Detect deepfakes' first")
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
    if target.has_field(schema.PROVENANCE_STRONG):
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
        rule, prob_field = rule_from_params(
            {"threshold": 0.5, "review_low": 0.3, "review_high": 0.7, **non_null(ctx.params)}
        )
    except ValueError as exc:
        message = str(exc)
        target_prop = thr
        if low is not None and not message.startswith("threshold"):
            target_prop = high if "high" in message or "lo <" in message else low
        invalid(target_prop, message)
        return None, cfo.PROB_FIELD
    return rule, prob_field
