"""The `apply_deepfake_threshold` operator: tag, keep as a saved view, or delete what a
`DecisionRule` removes, and tag what it sends to review or sets apart."""

from __future__ import annotations

import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate.filtering import KEEP, REMOVE, REVIEW, UNSCORED, DecisionRule
from curate.integrations import fiftyone as cfo

from .forms import ICONS, invalid, rule_from_params, rule_inputs, rule_params, run, text

LABEL = "Apply deepfake threshold"


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

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Apply the threshold to", require_flat=True)
        target = ctx.target_view(require_flat=True)
        rule, prob_field = rule_inputs(ctx, inputs, target)
        if rule is not None:
            _action_inputs(ctx, inputs, target, rule, prob_field)
        return types.Property(inputs, view=types.View(label=LABEL))

    def execute(self, ctx):
        rule, prob_field = rule_from_params(ctx.params)
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
        }
        return run(self, sample_collection, params, delegate)


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
            invalid(prop, "Tick the box to confirm the deletion")
