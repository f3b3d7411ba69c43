"""What the plugin's operators share: reading form values, marking fields invalid, running an
operator from Python, steering large runs to delegated execution, and the decision-rule part of
a form (threshold, band, unscored, provenance options) turned into a
`curate.filtering.DecisionRule` and described in words."""

from __future__ import annotations

from collections.abc import Callable

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate import schema
from curate.filtering import REMOVE, REVIEW, UNSCORED, DecisionRule
from curate.integrations import fiftyone as cfo
from curate.integrations.fiftyone.wording import (
    count,
    counts_sentence,
    rule_steps,
    threshold_help,
)

ICON = "/assets/icon.svg"
ICONS = {"icon": ICON, "light_icon": "/assets/icon-light.svg", "dark_icon": "/assets/icon-dark.svg"}
PLUGIN = "@curate/deepfakes"
DEFAULT_BAND = (0.3, 0.7)


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


def show_colors(ctx):
    """Have the App take the dataset's colour scheme now (curate sets it when it writes a
    field; an App that loaded the dataset earlier would keep its own copy)."""
    scheme = ctx.dataset.app_config.color_scheme
    if scheme is None:
        return None
    fields = [dict(f) for f in scheme.fields or []]
    return ctx.trigger("set_color_scheme", {"color_by": scheme.color_by, "fields": fields})


# -- long runs ----------------------------------------------------------------------------------
def execution_options(ctx, n: int, delegate_above: int):
    """Offer both ways to run; preselect Schedule (delegated) for more than `delegate_above`
    samples when this server can schedule (open-source FiftyOne needs
    FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true for that)."""
    from fiftyone.operators.executor import ExecutionOptions

    return ExecutionOptions(
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=bool(
            n > delegate_above and fo.config.allow_legacy_orchestrators
        ),
    )


def delegation_warning(inputs, n: int, delegate_above: int, what: str) -> None:
    """Say, for a run of more than `delegate_above` samples, how to run it in the background."""
    if n <= delegate_above:
        return
    if fo.config.allow_legacy_orchestrators:
        how = (
            "Schedule it (the arrow next to Execute) and run it with `fiftyone delegated launch`; "
            "`fiftyone delegated list` shows its state"
        )
    else:
        how = (
            "to schedule it instead, start the App server with "
            "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true and a worker with `fiftyone delegated "
            "launch` (see the plugin's documentation)"
        )
    inputs.view(
        "long_run",
        types.Warning(
            label=f"{count(n)} to {what}: a long run",
            description=f"An immediate run lasts only while the App stays open; {how}",
        ),
    )


# -- the decision rule --------------------------------------------------------------------------
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


def _defaults(rule: DecisionRule | None) -> dict:
    """The form values `rule` (or the plain default rule) stands for."""
    rule = rule or DecisionRule()
    params = rule_params(
        rule.threshold,
        rule.review_band,
        rule.unscored,
        rule.remove_strong_evidence,
        rule.review_conflicts,
    )
    if rule.review_band is None:
        params["review_low"], params["review_high"] = DEFAULT_BAND
    return params


def rule_from_params(params: dict, default: DecisionRule | None = None) -> tuple[DecisionRule, str]:
    """(the DecisionRule, the score field) a form's parameters describe, values the form does
    not set taken from `default` (else the plain default rule); ValueError if bad."""
    params = {**_defaults(default), **non_null(params)}
    threshold = cfo.parse_float(params["threshold"], "threshold")
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


def rule_preview(
    ctx,
    inputs,
    target,
    default: DecisionRule | None = None,
    tags: dict[str, str] | None = None,
    headline: Callable[[dict[str, int]], str] | None = None,
) -> tuple[DecisionRule | None, dict[str, int] | None]:
    """The rule the form's current values describe, and its outcome counts on `target`, shown
    as a notice saying exactly what happens to which samples (`headline(counts)`, else every
    outcome's count, then the rule's steps); (None, None) while the values do not make a rule
    (the fields say why). Call it where the summary should appear: first."""
    try:
        rule, prob_field = rule_from_params(ctx.params, default)
        cfo.check_rule_fields(target, rule, prob_field)
    except ValueError:
        return None, None
    counts = cfo.count_decisions(target, rule, prob_field)
    label = headline(counts) if headline else f"Of {count(len(target))}: {counts_sentence(counts)}"
    inputs.view(
        "preview",
        types.Notice(
            label=label,
            description="; ".join(rule_steps(rule, prob_field, tags)),
        ),
    )
    return rule, counts


def rule_inputs(
    ctx, inputs, target, default: DecisionRule | None = None
) -> tuple[DecisionRule | None, str]:
    """Add the rule's fields to `inputs`, preset to `default` (else the plain default rule);
    the rule they describe, or None when invalid."""
    start = _defaults(default)
    fields = sorted(target.get_field_schema(ftype=fo.FloatField))
    choices = types.DropdownView()
    for name in fields:
        choices.add_choice(name, label=name)
    prob_default = cfo.PROB_FIELD if cfo.PROB_FIELD in fields else (fields[0] if fields else None)
    prop = inputs.enum(
        "prob_field",
        choices.values(),
        default=prob_default,
        required=False,
        label="Score field",
        description="The float field written by 'Detect deepfakes'",
        view=choices,
    )
    if not fields:
        invalid(prop, "No float field on this dataset: run 'Detect deepfakes' first")
        return None, cfo.PROB_FIELD
    band_on = bool(ctx.params.get("use_review_band", start["use_review_band"]))
    try:
        rule, prob_field = rule_from_params(ctx.params, default)
    except ValueError as exc:
        rule, prob_field, problem = None, cfo.PROB_FIELD, str(exc)
    else:
        problem = None
    thr = inputs.float(
        "threshold",
        default=start["threshold"],
        min=0.0,
        max=1.0,
        required=False,
        label="Threshold",
        description=threshold_help(rule, band_on),
    )
    inputs.bool(
        "use_review_band",
        default=start["use_review_band"],
        label="Review band",
        description="Send samples between two scores to human review instead of deciding them",
    )
    low = high = None
    if band_on:
        low = inputs.float(
            "review_low",
            default=start["review_low"],
            min=0.0,
            max=1.0,
            label="Review from",
            description="Samples below this score are kept",
        )
        high = inputs.float(
            "review_high",
            default=start["review_high"],
            min=0.0,
            max=1.0,
            label="Remove from",
            description="Samples at or above this score are synthetic; between the two, review",
        )
    unscored = types.RadioGroup()
    unscored.add_choice(
        "separate", label="Set apart", description="Unreadable images get their own tag"
    )
    unscored.add_choice("keep", label="Keep", description="Treat unreadable images as kept")
    unscored.add_choice("drop", label="Remove", description="Treat unreadable images as synthetic")
    inputs.enum(
        "unscored",
        unscored.values(),
        default=start["unscored"],
        label="Unscored samples",
        view=unscored,
    )
    if target.has_field(schema.PROVENANCE_STRONG):
        inputs.bool(
            "remove_strong_evidence",
            default=start["remove_strong_evidence"],
            label="Remove on strong provenance evidence",
            description="A valid C2PA AI-generation claim or a matched watermark removes the "
            "sample whatever its score",
        )
        inputs.bool(
            "review_conflicts",
            default=start["review_conflicts"],
            label="Review evidence/score conflicts",
            description="Samples whose provenance evidence disagrees with the score go to review",
        )
    if problem:
        target_prop = thr
        if low is not None and not problem.startswith("threshold"):
            target_prop = high if "high" in problem or "lo <" in problem else low
        invalid(target_prop, problem)
        return None, cfo.PROB_FIELD
    return rule, prob_field


def decision_tags(ctx, rule: DecisionRule, action: str) -> dict[str, str]:
    """outcome -> the tag the apply operator's form will put on it."""
    tags = {}
    if action == "tag":
        tags[REMOVE] = text(ctx, "remove_tag", cfo.REMOVE_TAG)
    if rule.can_review:
        tags[REVIEW] = text(ctx, "review_tag", cfo.REVIEW_TAG)
    if rule.unscored == "separate":
        tags[UNSCORED] = text(ctx, "unscored_tag", cfo.UNSCORED_TAG)
    return tags
