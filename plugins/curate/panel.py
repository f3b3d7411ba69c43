"""The Deepfake review panel: look at the scores of the current view, set a threshold and a review
band while watching what they would remove, page through each group in the grid (borderline
first), and act through the plugin's own operators with the panel's settings.

Everything it shows comes from `curate`: counts and groups from the `DecisionRule` the
operators use (`count_decisions`, `outcome_view`), the histogram and ensemble figures from
`curate.integrations.fiftyone.review`, the metrics from `curate eval`'s `compute_metrics`.
The panel keeps the view it was opened on (its "base view"): showing a group narrows the grid
to it, and "Show all" goes back; a view the user picks becomes the new base view.
"""

from __future__ import annotations

import json

import fiftyone as fo
import fiftyone.operators as foo
import fiftyone.operators.types as types

from curate.filtering import OUTCOMES, UNSCORED, DecisionRule
from curate.integrations import fiftyone as cfo
from curate.integrations.fiftyone.review import STEP
from curate.integrations.fiftyone.wording import OUTCOME_NAMES, count, rule_steps

from . import figures
from .forms import DEFAULT_BAND, ICONS, PLUGIN, rule_params

NAME = "deepfake_review"
LABEL = "Deepfake review"
APPLY = f"{PLUGIN}/apply_deepfake_threshold"
EXPORT = f"{PLUGIN}/export_parquet"
DETECT = f"{PLUGIN}/detect_deepfakes"
NO_LABELS = "(none)"
HELP = """Set a threshold (and a review band) and watch what they decide; click a group to see
it in the grid, borderline samples first; act with the plugin's operators. Tags, deletions and
exports happen only through those operators' forms."""


class DeepfakeReviewPanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name=NAME,
            label=LABEL,
            help_markdown=HELP,
            category=foo.Categories.CURATE,
            surfaces="grid",
            **ICONS,
        )

    # -- events -------------------------------------------------------------------------------
    def on_load(self, ctx):
        state = ctx.panel.state
        prob_field = state.prob_field or cfo.PROB_FIELD
        applied = cfo.last_decision(ctx.dataset, prob_field)
        rule = applied.rule if applied else DecisionRule()
        band = rule.review_band or DEFAULT_BAND
        ctx.panel.state.set(
            {
                "prob_field": prob_field,
                "threshold": rule.threshold,
                "band": rule.review_band is not None,
                "review_low": band[0],
                "review_high": band[1],
                "unscored": rule.unscored,
                "remove_strong_evidence": rule.remove_strong_evidence,
                "review_conflicts": rule.review_conflicts,
                "label_field": state.label_field or NO_LABELS,
                "label_map": state.label_map or "",
                "base_view": _stages(ctx.view),
                "shown_view": None,
                "showing": None,
            }
        )
        _remember_applied(ctx, applied)
        self._refresh(ctx)

    def on_change_dataset(self, ctx):
        ctx.panel.state.set({"label_field": NO_LABELS, "label_map": "", "prob_field": None})
        self.on_load(ctx)

    def on_change_view(self, ctx):
        state = ctx.panel.state
        if state.threshold is None:  # the view changed before the panel finished loading
            self.on_load(ctx)
            return
        if state.shown_view is not None and _same(_stages(ctx.view), state.shown_view):
            return  # the grid shows a group the panel picked: the base view stands
        state.set({"base_view": _stages(ctx.view), "shown_view": None, "showing": None})
        self._refresh(ctx)

    def on_threshold(self, ctx):
        self._move(ctx, "threshold", ctx.params.get("value"))

    def on_review_low(self, ctx):
        self._move(ctx, "low", ctx.params.get("value"))

    def on_review_high(self, ctx):
        self._move(ctx, "high", ctx.params.get("value"))

    def on_histogram_click(self, ctx):
        # a bar's centre: put the threshold at its left edge
        x = ctx.params.get("x")
        if isinstance(x, (int, float)):
            self._move(ctx, "threshold", float(x) - STEP / 2)

    def on_band(self, ctx):
        ctx.panel.state.band = bool(ctx.params.get("value"))
        self._move(ctx, "threshold", ctx.panel.state.threshold)

    def on_unscored(self, ctx):
        ctx.panel.state.unscored = ctx.params.get("value") or "separate"
        self._refresh(ctx, histogram=False)

    def on_prob_field(self, ctx):
        ctx.panel.state.prob_field = ctx.params.get("value") or cfo.PROB_FIELD
        self._refresh(ctx)

    def on_label_field(self, ctx):
        ctx.panel.state.label_field = ctx.params.get("value") or NO_LABELS
        self._refresh(ctx, histogram=False)

    def on_label_map(self, ctx):
        ctx.panel.state.label_map = ctx.params.get("value") or ""
        self._refresh(ctx, histogram=False)

    def show_group(self, ctx):
        outcome = ctx.params.get("outcome")
        if outcome not in OUTCOMES:
            return
        rule, prob_field = self._settings(ctx)
        view = cfo.outcome_view(self._base(ctx), rule, outcome, prob_field)
        ctx.panel.state.set({"shown_view": _stages(view), "showing": outcome})
        ctx.ops.set_view(view)

    def show_all(self, ctx):
        self._restore_base(ctx)

    def tag(self, ctx):
        self._prompt(ctx, APPLY, action="tag")

    def save_view(self, ctx):
        self._prompt(ctx, APPLY, action="save_view")

    def delete(self, ctx):
        self._prompt(ctx, APPLY, action="delete")

    def export(self, ctx):
        self._prompt(ctx, EXPORT, only_kept=True)

    def detect(self, ctx):
        ctx.prompt(DETECT, on_success=self.on_operator_done)

    def on_operator_done(self, ctx):
        """An operator the panel opened has run: counts, groups and the applied decision may
        have changed."""
        _remember_applied(
            ctx, cfo.last_decision(ctx.dataset, ctx.panel.state.prob_field or cfo.PROB_FIELD)
        )
        self._refresh(ctx)

    def refresh(self, ctx):
        self._refresh(ctx)

    # -- what the events share ------------------------------------------------------------------
    def _settings(self, ctx) -> tuple[DecisionRule, str]:
        s = ctx.panel.state
        band = (s.review_low, s.review_high) if s.band else None
        rule = DecisionRule(
            DecisionRule().threshold if s.threshold is None else s.threshold,
            review_band=band,
            unscored=s.unscored or "separate",
            remove_strong_evidence=bool(s.remove_strong_evidence),
            review_conflicts=bool(s.review_conflicts),
        )
        return rule, s.prob_field or cfo.PROB_FIELD

    def _base(self, ctx):
        return fo.DatasetView._build(ctx.dataset, ctx.panel.state.base_view or [])

    def _restore_base(self, ctx) -> None:
        state = ctx.panel.state
        if state.shown_view is not None:
            state.set({"shown_view": None, "showing": None})
            ctx.ops.set_view(self._base(ctx))

    def _move(self, ctx, moved: str, value) -> None:
        s = ctx.panel.state
        if not isinstance(value, (int, float)):
            return
        t, lo, hi = s.threshold, s.review_low, s.review_high
        t, lo, hi = {"threshold": (value, lo, hi), "low": (t, value, hi), "high": (t, lo, value)}[
            moved
        ]
        if s.band:
            t, lo, hi = cfo.fit_band(t, lo, hi, moved)
        else:
            t = cfo.fit_band(t, 0.0, 1.0, "threshold")[0]
        s.set({"threshold": t, "review_low": lo, "review_high": hi})
        self._refresh(ctx, histogram=False)

    def _prompt(self, ctx, uri: str, **params) -> None:
        """Open an operator's form, filled with the panel's settings, on the panel's view."""
        rule, prob_field = self._settings(ctx)
        self._restore_base(ctx)
        target = "CURRENT_VIEW" if ctx.panel.state.base_view else "DATASET"
        ctx.prompt(
            uri,
            on_success=self.on_operator_done,
            params={
                "view_target": target,
                "prob_field": prob_field,
                **rule_params(
                    rule.threshold,
                    rule.review_band,
                    rule.unscored,
                    rule.remove_strong_evidence,
                    rule.review_conflicts,
                ),
                **params,
            },
        )

    def _refresh(self, ctx, histogram: bool = True) -> None:
        """Recompute what the panel shows for the base view and its settings."""
        state = ctx.panel.state
        base = self._base(ctx)
        prob_field = state.prob_field or cfo.PROB_FIELD
        if not base._dataset.has_sample_field(prob_field):
            state.set({"ready": False, "n": len(base)})
            return
        rule, prob_field = self._settings(ctx)
        update = {"ready": True, "n": len(base)}
        update["counts"] = cfo.count_decisions(base, rule, prob_field)
        if histogram or state.hist is None:
            update["hist"] = cfo.score_histogram(base, prob_field).counts
            members = cfo.ensemble_members(base, prob_field)
            update["members"] = [
                {"model": m.model, "mean": m.mean, "counts": m.histogram.counts}
                for m in cfo.member_summaries(base, members, prob_field)
            ]
            update["model"] = (
                f"an ensemble of {len(members)} detectors"
                if members
                else cfo.scoring_settings(base, prob_field).get("curate.model")
            )
        update["metrics"] = self._metrics(ctx, base, rule, prob_field)
        state.set(update)
        ctx.panel.data.set(
            {
                "histogram": figures.histogram_traces(state.hist, rule),
                "members_histogram": figures.member_traces(state.members or []),
            }
        )

    def _metrics(self, ctx, base, rule: DecisionRule, prob_field: str) -> dict | None:
        label = ctx.panel.state.label_field
        if not label or label == NO_LABELS:
            return None
        result = cfo.label_metrics(
            base, rule, label, prob_field, label_map=ctx.panel.state.label_map or None
        )
        m = result.metrics
        return {
            "error": result.error,
            "labelled": result.labelled,
            "unlabelled": result.unlabelled,
            "unscored": result.unscored,
            "by_class": result.by_class,
            "figures": None
            if m is None
            else {
                "n": m.n,
                "accuracy": m.accuracy,
                "fake_precision": m.fake_precision,
                "fake_recall": m.fake_recall,
                "real_removed": m.real_removed,
                "roc_auc": m.roc_auc,
                "average_precision": m.average_precision,
                "notes": m.notes,
            },
        }

    # -- layout ---------------------------------------------------------------------------------
    def render(self, ctx):
        panel = types.Object()
        s = ctx.panel.state
        if not s.ready:
            panel.md(
                f"### No scores yet\n\nThis view has {count(s.n or 0)} and no "
                f"`{s.prob_field or cfo.PROB_FIELD}` field: score it first.",
                name="md_not_scored",
            )
            panel.btn(
                "detect", label="Detect deepfakes…", on_click=self.detect, variant="contained"
            )
            return types.Property(panel, view=types.GridView(orientation="vertical", gap=2))
        rule, prob_field = self._settings(ctx)
        counts = s.counts or {}
        source = f" from {s.model}" if s.model else ""
        panel.md(
            f"**{count(s.n)}** in the view · scores `{prob_field}`{source}"
            + _applied_text(rule, s.applied),
            name="md_header",
        )
        panel.md(
            " · ".join(f"**{counts.get(o, 0):,}** {OUTCOME_NAMES[o]}" for o in OUTCOMES),
            name="md_counts",
        )
        panel.plot(
            "histogram",
            layout=figures.histogram_layout(rule, prob_field),
            config={"displayModeBar": False, "responsive": True},
            on_click=self.on_histogram_click,
        )
        self._render_settings(ctx, panel)
        panel.md("- " + "\n- ".join(rule_steps(rule, prob_field)), name="md_steps")
        self._render_groups(ctx, panel, counts)
        actions = panel.h_stack("actions", gap=1, align_x="left")
        for name, label, handler in (
            ("tag", "Tag…", self.tag),
            ("save_view", "Save view…", self.save_view),
            ("delete", "Delete…", self.delete),
            ("export", "Export…", self.export),
        ):
            actions.btn(f"act_{name}", label=label, on_click=handler, variant="outlined")
        self._render_metrics(ctx, panel)
        self._render_members(ctx, panel)
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1, pad=1))

    def _render_settings(self, ctx, panel) -> None:
        s = ctx.panel.state
        floats = sorted(ctx.dataset.get_field_schema(ftype=fo.FloatField))
        if len(floats) > 1:
            choices = types.DropdownView()
            for name in floats:
                choices.add_choice(name, label=name)
            panel.enum("prob_field", choices.values(), label="Score field", view=choices,
                       default=s.prob_field, on_change=self.on_prob_field)  # fmt: skip
        panel.float(
            "threshold",
            min=0.0,
            max=1.0,
            label="Threshold",
            view=figures.slider("Threshold"),
            on_change=self.on_threshold,
        )
        panel.bool("band", label="Review band", view=types.SwitchView(), on_change=self.on_band)
        if s.band:
            panel.float(
                "review_low",
                min=0.0,
                max=1.0,
                label="Review from",
                view=figures.slider("Review from"),
                on_change=self.on_review_low,
            )
            panel.float(
                "review_high",
                min=0.0,
                max=1.0,
                label="Remove from",
                view=figures.slider("Remove from"),
                on_change=self.on_review_high,
            )
        unscored = types.DropdownView()
        for value, label in (("separate", "set apart"), ("keep", "keep"), ("drop", "remove")):
            unscored.add_choice(value, label=label)
        panel.enum("unscored", unscored.values(), label="Unscored samples", view=unscored,
                   on_change=self.on_unscored)  # fmt: skip

    def _render_groups(self, ctx, panel, counts: dict) -> None:
        s = ctx.panel.state
        groups = panel.h_stack("groups", gap=1, align_x="left")
        for outcome in OUTCOMES:
            name = OUTCOME_NAMES[outcome]
            groups.btn(
                f"show_{outcome}",
                label=f"Show {name} ({counts.get(outcome, 0):,})",
                on_click=self.show_group,
                params={"outcome": outcome},
                variant="contained" if s.showing == outcome else "outlined",
            )
        if s.showing:
            groups.btn("show_all", label="Show all", on_click=self.show_all, variant="outlined")
            order = "" if s.showing == UNSCORED else ", closest to the threshold first"
            panel.md(f"The grid shows the **{OUTCOME_NAMES[s.showing]}** samples{order}.",
                     name="md_showing")  # fmt: skip

    def _render_metrics(self, ctx, panel) -> None:
        s = ctx.panel.state
        fields = cfo.label_fields(self._base(ctx))
        choices = types.DropdownView()
        for name in (NO_LABELS, *fields):
            choices.add_choice(name, label=name)
        panel.enum(
            "label_field",
            choices.values(),
            label="Ground truth",
            description="A field with true Fake/Real labels: the metrics of curate eval",
            view=choices,
            on_change=self.on_label_field,
        )
        if not s.label_field or s.label_field == NO_LABELS:
            return
        panel.str(
            "label_map",
            label="Label map",
            description="Only for labels other than Fake/Real names, e.g. 1=Fake,0=Real",
            on_change=self.on_label_map,
        )
        metrics = s.metrics or {}
        if metrics.get("error"):
            panel.md(f"Cannot measure: {metrics['error']}", name="md_metrics")
            return
        panel.md(figures.metrics_markdown(metrics, ctx.panel.state.threshold), name="md_metrics")

    def _render_members(self, ctx, panel) -> None:
        members = ctx.panel.state.members or []
        if not members:
            return
        rows = "\n".join(f"| {m['model']} | {figures.fmt(m['mean'])} |" for m in members)
        panel.md(
            f"**Ensemble members** (`member_fake_probs`)\n\n| member | mean score |\n|---|---|\n{rows}",
            name="md_members",
        )
        panel.plot(
            "members_histogram",
            layout={
                "barmode": "overlay",
                "xaxis": {"range": [0, 1], "title": {"text": "member's fake_prob"}},
                "yaxis": {"title": {"text": "samples"}},
                "margin": {"t": 10, "b": 40, "l": 50, "r": 10},
                "legend": {"orientation": "h"},
                "height": 220,
            },
            config={"displayModeBar": False, "responsive": True},
        )


# -- helpers ------------------------------------------------------------------------------------
# Markdown blocks are named md_*: a panel reads a property's value from its state first, so a
# block named like a state key ("counts") would show that value instead of its text.


def _stages(view) -> list[dict]:
    """A view's stages as JSON values, without the App's per-stage ids."""
    return [{k: v for k, v in stage.items() if k != "_uuid"} for stage in view._serialize()]


def _same(a: list[dict], b: list[dict]) -> bool:
    def norm(stages):
        return json.dumps(
            [{k: v for k, v in s.items() if k != "_uuid"} for s in stages], sort_keys=True
        )

    return norm(a) == norm(b)


def _remember_applied(ctx, applied: cfo.AppliedDecision | None) -> None:
    ctx.panel.state.applied = (
        {"rule": cfo.rule_settings(applied.rule), "when": applied.when} if applied else None
    )


def _applied_text(rule: DecisionRule, applied: dict | None) -> str:
    """Whether the panel's settings are the decision last applied to the dataset."""
    if not applied:
        return " · no decision applied yet"
    if cfo.rule_from_settings(applied["rule"]) == rule:
        return f" · these settings are the decision applied on {applied['when']}"
    return f" · not applied (the decision applied on {applied['when']} differs)"
