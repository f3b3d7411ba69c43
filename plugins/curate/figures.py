"""What the Deepfake review panel draws: the Plotly histograms (bars coloured by outcome, the
threshold line, the review band), its sliders, and the metrics table."""

from __future__ import annotations

import fiftyone.operators.types as types

from curate.filtering import OUTCOMES, REVIEW, DecisionRule
from curate.integrations.fiftyone.colors import DECISION_COLORS
from curate.integrations.fiftyone.review import STEP
from curate.integrations.fiftyone.wording import OUTCOME_NAMES, count, num

THRESHOLD_LINE = "#E69F00"  # Okabe–Ito orange: visible on the App's light and dark themes


def slider(label: str) -> types.SliderView:
    """A [0, 1] slider on the 0.01 grid, its label on top (beside it, the App cuts labels at
    100 px: "Remove fr…")."""
    return types.SliderView(label=label, min=0.0, max=1.0, view_multiple_of=STEP,
                            value_precision=2, label_position="top")  # fmt: skip


def histogram_traces(hist: list[int] | None, rule: DecisionRule) -> list[dict]:
    """One bar per score bin, coloured by the outcome the rule's score cuts give it."""
    hist = hist or []
    lefts = [round(i * STEP, 6) for i in range(len(hist))]
    outcomes = [rule.decide(x) for x in lefts]
    return [
        {
            "type": "bar",
            "x": [round(x + STEP / 2, 6) for x in lefts],
            "y": hist,
            "width": STEP,
            "marker": {"color": [DECISION_COLORS[o] for o in outcomes]},
            "customdata": [OUTCOME_NAMES[o] for o in outcomes],
            "hovertemplate": "score %{x:.3f} ± 0.005: %{y} · %{customdata}<extra></extra>",
            "name": "samples",
        }
    ]


def histogram_layout(rule: DecisionRule, prob_field: str) -> dict:
    shapes = [
        {
            "type": "line",
            "x0": rule.threshold,
            "x1": rule.threshold,
            "y0": 0,
            "y1": 1,
            "yref": "paper",
            "line": {"color": THRESHOLD_LINE, "width": 2, "dash": "dash"},
        }
    ]
    if rule.review_band:
        lo, hi = rule.review_band
        shapes.append(
            {
                "type": "rect",
                "x0": lo,
                "x1": hi,
                "y0": 0,
                "y1": 1,
                "yref": "paper",
                "fillcolor": DECISION_COLORS[REVIEW],
                "opacity": 0.18,
                "line": {"width": 0},
            }
        )
    title = f"threshold {num(rule.threshold)}"
    if rule.review_band:
        title += f", review band {num(rule.review_band[0])}–{num(rule.review_band[1])}"
    return {
        "shapes": shapes,
        "bargap": 0,
        "xaxis": {"range": [0, 1], "title": {"text": f"{prob_field} ({title})"}},
        "yaxis": {"title": {"text": "samples"}},
        "margin": {"t": 10, "b": 40, "l": 50, "r": 10},
        "showlegend": False,
        "height": 260,
    }


def member_traces(members: list[dict]) -> list[dict]:
    return [
        {
            "type": "bar",
            "x": [round((i + 0.5) * STEP, 6) for i in range(len(m["counts"]))],
            "y": m["counts"],
            "width": STEP,
            "opacity": 0.55,
            "name": m["model"].rstrip("/").rsplit("/", 1)[-1],
        }
        for m in members
    ]


def fmt(x) -> str:
    """A figure to three decimals, or a dash for none."""
    return "–" if x is None else f"{x:.3f}"


def metrics_markdown(metrics: dict, threshold: float) -> str:
    f = metrics.get("figures") or {}
    lines = [
        f"**At threshold {num(threshold)}** on {count(metrics.get('labelled', 0), 'labelled sample')}"
        f" ({metrics.get('unlabelled', 0):,} without a label, {metrics.get('unscored', 0):,} "
        "labelled but unscored)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {fmt(f.get('accuracy'))} |",
        f"| Fake precision | {fmt(f.get('fake_precision'))} |",
        f"| Fake recall | {fmt(f.get('fake_recall'))} |",
        f"| Real removed | {fmt(f.get('real_removed'))} |",
        f"| ROC-AUC | {fmt(f.get('roc_auc'))} |",
        f"| average precision | {fmt(f.get('average_precision'))} |",
        "",
        "| true class | " + " | ".join(OUTCOME_NAMES[o] for o in OUTCOMES) + " |",
        "|---|" + "---|" * len(OUTCOMES),
    ]
    for cls, row in (metrics.get("by_class") or {}).items():
        lines.append(f"| {cls} | " + " | ".join(f"{row.get(o, 0):,}" for o in OUTCOMES) + " |")
    notes = f.get("notes") or []
    if notes:
        lines += ["", *[f"_{n}_" for n in notes]]
    return "\n".join(lines)
