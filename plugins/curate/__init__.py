"""curate's FiftyOne operators: detect synthetic images, act on the scores, export to Parquet.

Thin front ends over `curate.integrations.fiftyone`; every algorithm lives in `curate`.
One module per operator (`detect`, `apply`, `export`); `forms` holds what they share.
"""

from __future__ import annotations

from .apply import ApplyDeepfakeThreshold
from .detect import DetectDeepfakes
from .export import ExportParquet


def register(p):
    p.register(DetectDeepfakes)
    p.register(ApplyDeepfakeThreshold)
    p.register(ExportParquet)
