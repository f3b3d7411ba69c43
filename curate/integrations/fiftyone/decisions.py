"""`curate.filtering.DecisionRule` on FiftyOne samples: views, counts, tags, deletions.

FiftyOne selects samples with MongoDB expressions, so the rule is translated here; every
number and choice comes from the `DecisionRule` object (`keep_below`, `remove_from`,
`unscored_outcome`, the provenance options), applied in the same order as
`DecisionRule.decide_many`, and the tests check the two agree sample for sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from curate import schema
from curate.filtering import KEEP, OUTCOMES, REMOVE, REVIEW, UNSCORED, DecisionRule
from curate.integrations.fiftyone.fields import PROB_FIELD

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from fiftyone.core.expressions import ViewExpression

REMOVE_TAG = "synthetic"
REVIEW_TAG = "deepfake_review"
UNSCORED_TAG = "deepfake_unscored"
KEPT_VIEW = "deepfake_kept"
ACTIONS = ("tag", "save_view", "delete")


def parse_float(value: Any, name: str) -> float:
    """A probability from a form or CLI value, with a one-line error when it is not one."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if math.isnan(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return f


def _assign(exprs: dict[str, ViewExpression], rows: ViewExpression, outcome: str) -> None:
    """`decide_many`'s `out[rows] = outcome`: `rows` leave whatever outcome they had."""
    for other in OUTCOMES:
        if other != outcome:
            exprs[other] = exprs[other] & ~rows
    exprs[outcome] = exprs[outcome] | rows


def decision_expressions(
    rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, ViewExpression]:
    """One `ViewExpression` per outcome ("keep", "remove", "review", "unscored") that selects
    exactly the samples `rule.decide_many` gives that outcome.

    A sample is scored when its value is a number other than NaN: null, missing and NaN sort
    below every number in MongoDB, so `>= -inf` is true for exactly the scored ones (and a bare
    `fake_prob < t` would also match every unscored sample)."""
    from fiftyone import ViewExpression as E
    from fiftyone import ViewField as F

    p = F(prob_field)
    scored = p >= float("-inf")
    says = F(schema.PROVENANCE_SYNTHETIC)
    # Every sample starts in review; then the steps of `decide_many`, in its order.
    exprs = {o: E(o == REVIEW) for o in OUTCOMES}
    _assign(exprs, scored & (p < rule.keep_below), KEEP)
    _assign(exprs, scored & (p >= rule.remove_from), REMOVE)
    if rule.review_conflicts:
        # Evidence that disagrees with the score sends the sample to review.
        _assign(exprs, exprs[KEEP] & says.is_in([True]), REVIEW)
        _assign(exprs, exprs[REMOVE] & says.is_in([False]), REVIEW)
    _assign(exprs, ~scored, rule.unscored_outcome)
    if rule.remove_strong_evidence:
        _assign(exprs, F(schema.PROVENANCE_STRONG).is_in([True]), REMOVE)
    return exprs


def decision_views(
    samples: SampleCollection, rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, SampleCollection]:
    """The samples of each outcome, as views of `samples` (empty views included)."""
    return {o: samples.match(e) for o, e in decision_expressions(rule, prob_field).items()}


def count_decisions(
    samples: SampleCollection, rule: DecisionRule, prob_field: str = PROB_FIELD
) -> dict[str, int]:
    """How many samples get each outcome (computed in the database; zeros included)."""
    return {o: v.count() for o, v in decision_views(samples, rule, prob_field).items()}


def selected_by(
    samples: SampleCollection,
    rule: DecisionRule,
    outcomes: tuple[str, ...] | list[str],
    prob_field: str = PROB_FIELD,
) -> SampleCollection:
    """The samples whose outcome under `rule` is one of `outcomes`."""
    bad = [o for o in outcomes if o not in OUTCOMES]
    if bad:
        raise ValueError(f"unknown outcome(s) {bad}; choose from {', '.join(OUTCOMES)}")
    if not outcomes:
        return samples.limit(0)
    exprs = decision_expressions(rule, prob_field)
    expr = exprs[outcomes[0]]
    for o in outcomes[1:]:
        expr = expr | exprs[o]
    return samples.match(expr)


def check_rule_fields(samples: SampleCollection, rule: DecisionRule, prob_field: str) -> None:
    """Raise ValueError when the dataset lacks a field `rule` reads."""
    dataset = samples._dataset
    if not dataset.has_sample_field(prob_field):
        raise ValueError(
            f"the dataset has no {prob_field!r} field; score it first (detect_deepfakes)"
        )
    if rule.uses_provenance and not dataset.has_sample_field(schema.PROVENANCE_STRONG):
        raise ValueError(
            "the rule uses provenance evidence but the dataset has no provenance fields; "
            "score it with provenance on (detect_deepfakes, 'Provenance evidence')"
        )


@dataclass
class DecisionSummary:
    """What `apply_decision` did: outcome counts and the action taken."""

    counts: dict[str, int] = field(default_factory=dict)
    action: str = "tag"
    deleted: int = 0
    saved_view: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # outcome -> tag applied


def apply_decision(
    samples: SampleCollection,
    rule: DecisionRule,
    *,
    action: Literal["tag", "save_view", "delete"] = "tag",
    prob_field: str = PROB_FIELD,
    remove_tag: str = REMOVE_TAG,
    review_tag: str = REVIEW_TAG,
    unscored_tag: str = UNSCORED_TAG,
    view_name: str = KEPT_VIEW,
    confirm_delete: bool = False,
) -> DecisionSummary:
    """Act on `rule`'s decisions for `samples`.

    - "tag" (non-destructive): samples to remove get `remove_tag`.
    - "save_view": the kept samples are saved as the dataset view `view_name` (a live
      `match` on `prob_field`, overwritten if it exists).
    - "delete": the samples to remove are deleted from the dataset; refuses unless
      `confirm_delete=True`.

    Whatever the action, review samples get `review_tag` and set-apart unscored samples
    `unscored_tag`. Before tagging, these tags are removed from `samples`, so after a re-run
    with another threshold they describe the current rule only.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
    if action == "delete" and not confirm_delete:
        raise ValueError("deleting samples needs an explicit confirmation (confirm_delete=True)")
    if action == "save_view" and not (view_name and view_name.strip()):
        raise ValueError("a saved view needs a name")
    check_rule_fields(samples, rule, prob_field)
    views = decision_views(samples, rule, prob_field)
    summary = DecisionSummary(counts={o: len(v) for o, v in views.items()}, action=action)
    tags = {REVIEW: review_tag, UNSCORED: unscored_tag}
    if action == "tag":
        tags[REMOVE] = remove_tag
    stale = [t for t in tags.values() if t]
    if stale:
        samples.untag_samples(stale)
    for outcome, tag in tags.items():
        if tag and summary.counts[outcome]:
            views[outcome].tag_samples(tag)
            summary.tags[outcome] = tag
    if action == "save_view":
        samples._dataset.save_view(view_name, views[KEEP], overwrite=True)
        summary.saved_view = view_name
    elif action == "delete":
        summary.deleted = summary.counts[REMOVE]
        if summary.deleted:
            samples._dataset.delete_samples(views[REMOVE])
    return summary
