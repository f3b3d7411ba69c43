"""What one piece of provenance evidence is, and the IPTC vocabulary every reader shares.

The C2PA, metadata and watermark readers each return `Evidence`; they share it from here so
that none of them imports the checker that composes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/), by what they say.
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
SYNTHETIC_SOURCE_TYPES = AI_SOURCE_TYPES | {"algorithmicMedia", "compositeSynthetic"}
CAPTURE_SOURCE_TYPES = frozenset(
    {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "compositeCapture"}
)

DETAIL_TEXT_LIMIT = 2000  # characters kept per raw metadata value (ComfyUI graphs run to 100 KB)


@dataclass
class Evidence:
    """One piece of evidence: where it came from, what it says, and how much it can be trusted.

    `says` is "synthetic", "captured" or None (present but neutral); `strong` is set only for
    evidence that is hard to produce by accident: a C2PA manifest that validates and declares
    AI generation, or a known watermark matched far beyond chance."""

    kind: str  # "c2pa", "metadata", "watermark"
    summary: str
    says: str | None = None
    strong: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


def source_type_name(value: str) -> str:
    """`http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia` -> its last part."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def source_types_say(types: Iterable[str]) -> str | None:
    """What a set of digital source types declares: "synthetic", "captured" or None."""
    types = set(types)
    if types & SYNTHETIC_SOURCE_TYPES:
        return "synthetic"
    if types & CAPTURE_SOURCE_TYPES:
        return "captured"
    return None


def clip(text: str) -> str:
    """`text` cut to `DETAIL_TEXT_LIMIT` characters, saying how long it was."""
    if len(text) <= DETAIL_TEXT_LIMIT:
        return text
    return text[:DETAIL_TEXT_LIMIT] + f"... [{len(text):,} characters in all]"
