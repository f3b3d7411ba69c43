"""How the App's forms and panel say counts and decision rules in words.

One place, so the operators and the review panel describe a `DecisionRule` the same way, and
so counts read "1 sample", "2 samples".
"""

from __future__ import annotations

from collections.abc import Mapping

from curate.filtering import KEEP, OUTCOMES, REMOVE, REVIEW, UNSCORED, DecisionRule

# What each outcome is called in the App.
OUTCOME_NAMES = {KEEP: "kept", REMOVE: "synthetic", REVIEW: "to review", UNSCORED: "unscored"}


def count(n: int, noun: str = "sample", plural: str | None = None) -> str:
    """`n` with its noun in the right number: "1 sample", "0 samples", "1,234 samples"."""
    word = noun if n == 1 else (plural or noun + "s")
    return f"{n:,} {word}"


def num(x: float) -> str:
    """A threshold as people write it: 0.5, 0.35, 1."""
    return f"{x:g}"


def counts_sentence(counts: Mapping[str, int]) -> str:
    """ "3 kept, 2 synthetic, 0 to review, 1 unscored" (every outcome, in `OUTCOMES` order)."""
    return ", ".join(f"{counts.get(o, 0):,} {OUTCOME_NAMES[o]}" for o in OUTCOMES)


def rule_steps(
    rule: DecisionRule, prob_field: str = "fake_prob", tags: Mapping[str, str] | None = None
) -> list[str]:
    """What `rule` does to a sample, one line per outcome, in the order it decides them.

    `tags` (outcome -> tag) names the tag each outcome will get, when an operator tags."""
    tags = tags or {}

    def tagged(outcome: str) -> str:
        tag = tags.get(outcome)
        return f" (tagged '{tag}')" if tag else ""

    p = prob_field
    if rule.review_band:
        lo, hi = (num(b) for b in rule.review_band)
        steps = [
            f"{p} < {lo}: kept{tagged(KEEP)}",
            f"{lo} ≤ {p} < {hi}: to review{tagged(REVIEW)}",
            f"{p} ≥ {hi}: synthetic{tagged(REMOVE)}",
        ]
    else:
        t = num(rule.threshold)
        steps = [f"{p} < {t}: kept{tagged(KEEP)}", f"{p} ≥ {t}: synthetic{tagged(REMOVE)}"]
    if rule.review_conflicts:
        steps.append(
            f"provenance evidence that disagrees with the score: to review{tagged(REVIEW)}"
        )
    unscored = {"keep": "kept", "drop": "synthetic", "separate": "set apart as unscored"}
    steps.append(
        f"no score (unreadable image): {unscored[rule.unscored]}{tagged(rule.unscored_outcome)}"
    )
    if rule.remove_strong_evidence:
        steps.append(
            "strong provenance evidence (a valid C2PA AI-generation claim, a matched watermark): "
            f"synthetic whatever the score{tagged(REMOVE)}"
        )
    return steps


def threshold_help(rule: DecisionRule | None, band_on: bool) -> str:
    """The description of a form's Threshold field: what the number does under the rule."""
    if not band_on:
        return "Samples whose fake probability is at or above this are synthetic; below it, kept"
    band = ""
    if rule is not None and rule.review_band:
        band = f" ({num(rule.review_band[0])} to {num(rule.review_band[1])})"
    return (
        f"With the review band on, the band{band} decides and this number changes no outcome: "
        "below 'Review from' kept, from 'Review from' up to 'Remove from' to review, from "
        "'Remove from' up synthetic. It must lie inside the band; it is recorded with the "
        "decision and the panel sorts and measures at it"
    )
