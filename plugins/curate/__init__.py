"""curate's FiftyOne plugin: detect synthetic images, review the scores in a panel, act on
them, export to Parquet.

Thin front ends over `curate.integrations.fiftyone`; every algorithm lives in `curate`.
One module per operator (`detect`, `apply`, `export`), the review panel (`panel`); `forms`
holds what the operators share.
"""

from __future__ import annotations

from .apply import ApplyDeepfakeThreshold
from .detect import DetectDeepfakes
from .export import ExportParquet
from .panel import DeepfakeReviewPanel


def register(p):
    p.register(DetectDeepfakes)
    p.register(ApplyDeepfakeThreshold)
    p.register(ExportParquet)
    p.register(DeepfakeReviewPanel)
