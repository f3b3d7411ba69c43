"""How scores were made: the model (or ensemble), revision, head, labels and calibration a
scored Parquet file records in its `curate.*` schema metadata (`DeepfakeScorer.metadata` writes
them), or a scorer holds, so that the same scorer can be built again."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from curate.calibration import Calibration
from curate.schema import METADATA_PREFIX


@dataclass(frozen=True)
class StoredScoring:
    """What made a set of scores; None where nothing says. For an ensemble `model` is the list
    of its members (as `DeepfakeScorer.model` is), `revision` None or one per member, and
    `combine` how they were combined; `head` is an adapted head's folder."""

    model: str | list[str] | None = None
    revision: str | list[str | None] | None = None
    calibration: Calibration | None = None
    combine: str | None = None  # set for an ensemble only
    head: str | None = None
    head_sha256: str | None = None
    synthetic_labels: str | list[str] | dict[str, Any] | None = None
    dtype: str | None = None  # as resolved when the scores were made ("float32", ...)

    @property
    def members(self) -> list[str] | None:
        """An ensemble's member models in order; None for one model."""
        return list(self.model) if isinstance(self.model, (list, tuple)) else None

    def describe(self) -> str | None:
        """The model in words: `m`, `m with adapted head h`, `ensemble (mean) of a, b`."""
        if self.model is None:
            return None
        if self.members is not None:
            return f"ensemble ({self.combine or 'mean'}) of {', '.join(self.members)}"
        if self.head is not None:
            return f"{self.model} with adapted head {self.head}"
        return str(self.model)


def stored_scoring(metadata: Mapping[str, str]) -> StoredScoring:
    """The scoring settings in `curate.*` metadata entries (as `curate_metadata` returns them).
    An entry that cannot be read counts as absent: it describes the scores, it is not them."""
    members = _json(metadata, "members")
    ensemble = (
        isinstance(members, list) and len(members) > 1 and all(isinstance(m, str) for m in members)
    )
    return StoredScoring(
        model=members if ensemble else _text(metadata, "model"),
        revision=_json(metadata, "revision"),
        calibration=_calibration(metadata),
        combine=_text(metadata, "combine") if ensemble else None,
        head=_text(metadata, "head"),
        head_sha256=_text(metadata, "head_sha256"),
        synthetic_labels=_json(metadata, "synthetic_labels"),
        dtype=_text(metadata, "dtype"),
    )


def scoring_of(scorer: Any) -> StoredScoring:
    """What a `DeepfakeScorer` makes scores with, as a scored file would record it."""
    model = scorer.model
    ensemble = isinstance(model, (list, tuple))
    return StoredScoring(
        model=list(model) if ensemble else model,
        revision=scorer.revision,
        calibration=scorer.calibration,
        combine=getattr(scorer, "combine", None) if ensemble else None,
        head=getattr(scorer, "head", None),
        synthetic_labels=getattr(scorer, "synthetic_labels", None),
    )


def read_stored_scoring(path: str | os.PathLike) -> StoredScoring:
    """`stored_scoring` of a Parquet file's metadata (nothing known if it cannot be read)."""
    from curate.io.parquet import curate_metadata

    try:
        return stored_scoring(curate_metadata(path))
    except (OSError, ValueError):
        return StoredScoring()


def _text(metadata: Mapping[str, str], key: str) -> str | None:
    # `metadata_entries` stores strings as they are and None as JSON "null".
    value = metadata.get(METADATA_PREFIX + key)
    return None if value in (None, "", "null") else value


def _json(metadata: Mapping[str, str], key: str) -> Any:
    """An entry that may hold a string as it is or a list / dict as JSON (a revision per
    ensemble member, synthetic labels per member)."""
    value = _text(metadata, key)
    if value is None or value[:1] not in "[{":
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _calibration(metadata: Mapping[str, str]) -> Calibration | None:
    try:
        raw = json.loads(metadata.get(METADATA_PREFIX + "calibration", "null"))
        if not raw:
            return None
        return Calibration(
            slope=float(raw["slope"]),
            intercept=float(raw.get("intercept", 0.0)),
            method=str(raw.get("method", "platt")),
            model=raw.get("model"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
