"""The colours the FiftyOne App draws curate's labels in, set on the dataset when they are written.

Fake and Real (and the four outcomes of a decision) get distinct colours from the Okabe–Ito
palette, which stays distinguishable under the common colour-vision deficiencies: Real / kept
blue, Fake / removed vermillion, review reddish purple, unscored grey. The App draws per-value
colours only when it colours "by value", so that mode is switched on, unless the dataset's colour
scheme already names another mode (someone chose it: their choice stands).
"""

from __future__ import annotations

from collections.abc import Mapping

from curate import schema
from curate.filtering import KEEP, REMOVE, REVIEW, UNSCORED

BLUE = "#0072B2"
VERMILLION = "#D55E00"
REDDISH_PURPLE = "#CC79A7"
GREY = "#999999"

LABEL_COLORS = {schema.FAKE: VERMILLION, schema.REAL: BLUE}
DECISION_COLORS = {KEEP: BLUE, REMOVE: VERMILLION, REVIEW: REDDISH_PURPLE, UNSCORED: GREY}


def set_value_colors(dataset, field: str, colors: Mapping[str, str]) -> bool:
    """Colour the `label` values of the Classification field `field` on the dataset's App colour
    scheme (other fields' settings are kept). Returns whether the scheme changed."""
    import fiftyone as fo

    scheme = dataset.app_config.color_scheme or fo.ColorScheme()
    entry = {
        "path": field,
        "colorByAttribute": "label",
        "valueColors": [{"value": v, "color": c} for v, c in colors.items()],
    }
    fields = [dict(f) for f in (scheme.fields or []) if f.get("path") != field]
    old = next((f for f in (scheme.fields or []) if f.get("path") == field), None)
    if old is not None and old.get("fieldColor"):
        entry["fieldColor"] = old["fieldColor"]
    color_by = scheme.color_by or "value"
    if old == entry and scheme.color_by == color_by:
        return False
    scheme.fields = [*fields, entry]
    scheme.color_by = color_by
    dataset.app_config.color_scheme = scheme
    dataset.save()
    return True
