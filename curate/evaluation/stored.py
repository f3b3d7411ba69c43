"""How stored scores were made: the model, revision and calibration a scored Parquet file
records in its `curate.*` schema metadata (`DeepfakeScorer.metadata` writes them)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from curate.calibration import Calibration
from curate.schema import METADATA_PREFIX


@dataclass(frozen=True)
class StoredScoring:
    """What a scored file says about its scores; None where it says nothing."""

    model: str | None = None
    revision: str | None = None
    calibration: Calibration | None = None


def stored_scoring(metadata: Mapping[str, str]) -> StoredScoring:
    """The scoring settings in `curate.*` metadata entries (as `curate_metadata` returns them).
    An entry that cannot be read counts as absent: it describes the scores, it is not them."""
    return StoredScoring(
        model=_text(metadata, "model"),
        revision=_text(metadata, "revision"),
        calibration=_calibration(metadata),
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
