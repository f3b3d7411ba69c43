"""Which of a checkpoint's classes mean synthetic and which mean real, read from `id2label`.

Public detectors name their classes in many ways (`Fake`/`Real`, `artificial`/`human`,
`AI-generated`/`human`, `ai`/`hum`, `Realism`/`Deepfake`, or three classes such as
`Artificial`/`Deepfake`/`Real`). A label is matched against the synonym tables below after
normalising it: case, separators (`-`, `_`, spaces) and filler words (`image`, `photo`, ...)
are ignored, and a trailing plural `s` is dropped. Every label must land on exactly one side;
a label on neither (or naming both) is an error, never a guess. `synthetic_labels=` names the
synthetic classes explicitly instead, and every other class then counts as real.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from curate.detectors.base import ModelLoadError

SYNTHETIC_NAMES = (
    "fake",
    "ai",
    "ai-generated",
    "ai-gen",
    "ai-created",
    "ai-made",
    "ai-art",
    "generated",
    "computer-generated",
    "machine-generated",
    "artificial",
    "synthetic",
    "deepfake",
    "manipulated",
)
REAL_NAMES = (
    "real",
    "human",
    "hum",
    "human-made",
    "human-created",
    "authentic",
    "genuine",
    "natural",
    "nature",
    "realism",
    "original",
    "pristine",
    "not-ai",
    "non-ai",
)
# Words that say what the class is made of, not which side it is on ("real_images").
FILLER_WORDS = frozenset(
    {"image", "images", "img", "imgs", "photo", "photos", "picture", "pictures"}
)
FIX_HINT = (
    "name the synthetic classes with synthetic_labels=[...] (CLI: --synthetic-labels a,b); "
    "every other class then counts as real"
)


def _words(label: str) -> list[str]:
    text = unicodedata.normalize("NFKC", str(label)).casefold()
    words = [w for w in re.split(r"[^0-9a-z]+", text) if w]
    kept = [w for w in words if w not in FILLER_WORDS]
    return kept or words


def _key(label: str) -> str:
    return "".join(_words(label))


_SYNTHETIC = frozenset(_key(n) for n in SYNTHETIC_NAMES)
_REAL = frozenset(_key(n) for n in REAL_NAMES)
assert not _SYNTHETIC & _REAL, "a synonym is on both sides"


def side_of(label: str) -> str | None:
    """ "synthetic", "real", "both" (a label such as `real_or_fake`) or None (unknown)."""
    key = _key(label)
    for k in (key, key[:-1] if key.endswith("s") else key):
        if k in _SYNTHETIC:
            return "synthetic"
        if k in _REAL:
            return "real"
    words = set(_words(label))
    if words & _SYNTHETIC and words & _REAL:
        return "both"
    return None


def parse_synthetic_labels(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """`synthetic_labels` as given (a list, or one comma-separated string as the CLI takes it)
    -> a tuple of names, or None when not given."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise ModelLoadError(f"synthetic_labels={value!r} names no class; {FIX_HINT}.")
    return tuple(names)


def label_indices(
    id2label: Mapping[Any, str], synthetic_labels: Sequence[str] | str | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(fake_indices, real_indices): the classes that mean synthetic and real, by name."""
    labels = {int(i): str(name) for i, name in id2label.items()}
    shown = [labels[i] for i in sorted(labels)]
    if len(labels) < 2:
        raise ModelLoadError(
            f"The checkpoint has {len(labels)} class(es) {shown}; a detector needs at least a "
            "synthetic and a real class."
        )
    names = parse_synthetic_labels(synthetic_labels)
    if names is not None:
        fake = _named(labels, names, shown)
    else:
        sides = {i: side_of(labels[i]) for i in sorted(labels)}
        unknown = [labels[i] for i, side in sides.items() if side is None]
        both = [labels[i] for i, side in sides.items() if side == "both"]
        if unknown:
            raise ModelLoadError(
                f"The checkpoint's labels {shown} cannot be read as synthetic or real: "
                f"{', '.join(map(repr, unknown))} {'matches' if len(unknown) == 1 else 'match'} "
                f"neither curate's synthetic names ({', '.join(SYNTHETIC_NAMES)}) nor its real "
                f"names ({', '.join(REAL_NAMES)}); {FIX_HINT}."
            )
        if both:
            raise ModelLoadError(
                f"The checkpoint's labels {shown} cannot be read as synthetic or real: "
                f"{', '.join(map(repr, both))} names both a synthetic and a real class; "
                f"{FIX_HINT}."
            )
        fake = [i for i, side in sides.items() if side == "synthetic"]
    real = [i for i in sorted(labels) if i not in fake]
    if not fake or not real:
        missing = "synthetic" if not fake else "real"
        raise ModelLoadError(
            f"The checkpoint's labels {shown} leave no {missing} class; {FIX_HINT}, and at "
            "least one must be left real."
        )
    return tuple(fake), tuple(real)


def _named(labels: dict[int, str], names: tuple[str, ...], shown: list[str]) -> list[int]:
    """Indices of the classes `names` picks (case-insensitive), each name matching one."""
    by_name: dict[str, list[int]] = {}
    for i, label in labels.items():
        by_name.setdefault(label.strip().casefold(), []).append(i)
    picked: list[int] = []
    for name in names:
        found = by_name.get(name.casefold())
        if not found:
            raise ModelLoadError(
                f"synthetic_labels names {name!r}, which is not one of the checkpoint's labels "
                f"{shown}."
            )
        picked += found
    return sorted(set(picked))
