"""The `apply_deepfake_threshold` operator: tag, keep as a saved view, or delete what a
`DecisionRule` removes, tag what it sends to review or sets apart, and write every sample's
outcome to `deepfake_decision` (what the App's tiles show once a rule is applied)."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate.filtering import KEEP, OUTCOMES, REMOVE, REVIEW, UNSCORED, DecisionRule
from curate.integrations import fiftyone as cfo
from curate.integrations.fiftyone.wording import OUTCOME_NAMES, count

from .forms import (
    ICONS,
    decision_tags,
    delegation_warning,
    execution_options,
    invalid,
    rule_from_params,
    rule_inputs,
    rule_params,
    rule_preview,
    run,
    show_colors,
    text,
)

LABEL = "Apply deepfake threshold"
TAGGED = {REMOVE: "the synthetic samples", REVIEW: "the samples to review",
          UNSCORED: "the unscored samples"}  # fmt: skip
# Above this many samples the form suggests a scheduled run (tags and decisions are written in
# a few database passes, so only very large views come near FiftyOne's immediate-run limit).
DELEGATE_ABOVE = 200_000


class ApplyDeepfakeThreshold(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="apply_deepfake_threshold",
            label=LABEL,
            description="Tag, keep as a saved view, or delete the samples scored as synthetic",
            **ICONS,
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_execution_options(self, ctx):
        return execution_options(ctx, len(ctx.target_view(require_flat=True)), DELEGATE_ABOVE)

    def resolve_input(self, ctx):
        inputs = types.Object()
        target = ctx.target_view(require_flat=True)
        action = ctx.params.get("action", "tag")
        # The summary comes first: what will happen, to how many samples.
        rule, counts = rule_preview(ctx, inputs, target, tags=_tags(ctx, action))
        inputs.view_target(ctx, action_description="Apply the threshold to", require_flat=True)
        delegation_warning(inputs, len(target), DELEGATE_ABOVE, "decide")
        rule, prob_field = rule_inputs(ctx, inputs, target)
        if rule is not None:
            _action_inputs(ctx, inputs, target, rule, counts)
        return types.Property(inputs, view=types.View(label=LABEL))

    def execute(self, ctx):
        rule, prob_field = rule_from_params(ctx.params)
        decision_field = text(ctx, "decision_field", cfo.DECISION_FIELD)
        summary = cfo.apply_decision(
            ctx.target_view(require_flat=True),
            rule,
            action=ctx.params.get("action", "tag"),
            prob_field=prob_field,
            remove_tag=text(ctx, "remove_tag", cfo.REMOVE_TAG),
            review_tag=text(ctx, "review_tag", cfo.REVIEW_TAG),
            unscored_tag=text(ctx, "unscored_tag", cfo.UNSCORED_TAG),
            view_name=text(ctx, "view_name", cfo.KEPT_VIEW),
            confirm_delete=bool(ctx.params.get("confirm_delete", False)),
            decision_field=decision_field,
        )
        if not ctx.delegated:
            ctx.ops.reload_dataset()
            show_colors(ctx)
            # Tiles show the decision: the decision field on, the 0.5 label off.
            label_field = cfo.label_field_of(ctx.dataset, prob_field)
            active = [f for f in (ctx.active_fields or []) if f != label_field]
            ctx.ops.set_active_fields([*active, decision_field])
        return _results(summary)

    def resolve_output(self, ctx):
        results = ctx.results or {}
        outputs = types.Object()
        outputs.str("outcomes", label="Outcomes")
        if results.get("tags"):
            outputs.str("tags", label="Tags applied")
        if results.get("decision_field"):
            outputs.str("decision_field", label="Decision written to")
        if results.get("saved_view"):
            outputs.str("saved_view", label="Saved view")
        if results.get("action") == "delete":
            outputs.int("deleted", label="Deleted")
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
        decision_field: str = cfo.DECISION_FIELD,
        delegate: bool = False,
    ):
        """Act on the scores from Python::

        apply = foo.get_operator("@curate/deepfakes/apply_deepfake_threshold")
        apply(dataset, threshold=0.7, review_band=(0.4, 0.9))        # tag
        apply(dataset, threshold=0.7, action="delete", confirm_delete=True)
        """
        params = {
            "prob_field": prob_field,
            **rule_params(
                threshold, review_band, unscored, remove_strong_evidence, review_conflicts
            ),
            "action": action,
            "remove_tag": remove_tag,
            "review_tag": review_tag,
            "unscored_tag": unscored_tag,
            "view_name": view_name,
            "confirm_delete": confirm_delete,
            "decision_field": decision_field,
        }
        return run(self, sample_collection, params, delegate)


def _tags(ctx, action: str) -> dict[str, str] | None:
    try:
        rule, _ = rule_from_params(ctx.params)
    except ValueError:
        return None
    return decision_tags(ctx, rule, action)


def _results(summary: cfo.DecisionSummary) -> dict:
    outcomes = ", ".join(
        f"{count(summary.counts.get(o, 0))} {OUTCOME_NAMES[o]}"
        for o in (KEEP, REMOVE, REVIEW, UNSCORED)
    )
    return {
        **{f"n_{o}": n for o, n in summary.counts.items()},
        "outcomes": outcomes,
        "action": summary.action,
        "deleted": summary.deleted,
        "saved_view": summary.saved_view,
        "decision_field": summary.decision_field,
        "tags": ", ".join(
            f"'{summary.tags[o]}' on {TAGGED[o]}" for o in OUTCOMES if o in summary.tags
        ),
    }


def _action_inputs(ctx, inputs, target, rule: DecisionRule, counts: dict | None) -> None:
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
    prop = inputs.str(
        "decision_field",
        default=cfo.DECISION_FIELD,
        label="Decision field",
        description="Each sample's outcome (keep, remove, review, unscored) is written here; "
        "the App shows it on the tiles",
    )
    invalid(prop, cfo.field_problem(target, text(ctx, "decision_field", cfo.DECISION_FIELD),
                                    "decision"))  # fmt: skip
    if action == "delete":
        n = (counts or {}).get(REMOVE, 0)
        inputs.view(
            "delete_warning",
            types.Warning(label=f"{count(n)} will be permanently deleted"),
        )
        prop = inputs.bool(
            "confirm_delete",
            default=False,
            required=False,
            label="I understand: delete them",
            view=types.CheckboxView(),
        )
        if not ctx.params.get("confirm_delete", False):
            invalid(prop, "Tick the box to confirm the deletion")
