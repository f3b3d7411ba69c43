"""Several detectors as one: their members, and how their scores combine into one fake_prob.

Each member keeps its own preprocessing and label mapping; the scorer decodes an image once,
prepares it for every member, and combines the members' logit gaps `g_i` (where a member's
own fake_prob is `sigmoid(g_i)`) into one gap `g`, so `fake_prob = sigmoid(g)` and a
calibration acts on the combination as it would on one model:

- `mean` (default): the mean of the members' probabilities; `g = logit(mean sigmoid(g_i))`,
  computed in log space so probabilities near 0 or 1 keep their precision;
- `max`: the most suspicious member; `g = max g_i`;
- `logit_mean`: the mean of the members' logit gaps, then sigmoid.

The settings that name members (`model`, and per member `revision` and `synthetic_labels`)
are checked here too, before anything loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from curate.detectors.base import Detector

COMBINE_MODES = ("mean", "max", "logit_mean")


def check_combine(combine: str) -> str:
    """`combine` if it names a way to combine members, else a ValueError saying which do."""
    if combine not in COMBINE_MODES:
        raise ValueError(f"combine must be one of {', '.join(COMBINE_MODES)}, got {combine!r}")
    return combine


def model_list(model: str | Sequence[str] | None) -> list[str] | None:
    """`model` as the list of member ids it names (None: the default model). A string is one
    model (a local path may hold a comma); a list or tuple names the members in order."""
    if model is None:
        return None
    names = [model] if isinstance(model, str) else list(model)
    if not names:
        raise ValueError("model names no detector: give a model id or a list of them")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"model must be a Hub id or a local folder, got {name!r}")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"an ensemble names {', '.join(twice)} twice: list each member once")
    return names


def member_revisions(
    revision: str | Sequence[str | None] | None, members: list[str]
) -> str | list[str | None] | None:
    """One revision for one model; for an ensemble, None or one per member."""
    if len(members) == 1:
        if revision is None or isinstance(revision, str):
            return revision
        revs = list(revision)
        if len(revs) != 1:
            raise ValueError(f"one model but {len(revs)} revisions: give one revision")
        return revs[0]
    if revision is None:
        return None
    if isinstance(revision, str):
        raise ValueError(
            f"revision={revision!r} with an ensemble of {len(members)} models: a revision pins "
            "one model; give a list with one revision (or None) per model, in their order"
        )
    revs = list(revision)
    if len(revs) != len(members):
        raise ValueError(
            f"{len(members)} models but {len(revs)} revisions: give one (or None) per model"
        )
    return revs


def member_synthetic_labels(
    value: Sequence[str] | str | Mapping[str, Sequence[str] | str] | None, members: list[str]
) -> str | list[str] | dict[str, str | list[str]] | None:
    """`synthetic_labels` as plain data: None, "a,b", a list, or {member: either of those}."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(members))
        if unknown:
            raise ValueError(
                f"synthetic_labels names {', '.join(unknown)}, which is not one of the models "
                f"({', '.join(members)})"
            )
        return {m: v if isinstance(v, str) else list(v) for m, v in value.items()}
    return list(value)


def combine_gaps(gaps: Sequence[np.ndarray], combine: str = "mean") -> np.ndarray:
    """One logit gap per row (float64) from the members' gaps (each [N]), by `combine`."""
    check_combine(combine)
    g = np.stack([np.asarray(x, dtype=np.float64) for x in gaps])  # [members, N]
    if combine == "mean":
        # log mean sigmoid(g) - log mean sigmoid(-g); the 1/n cancels. log sigmoid(x) is
        # -logaddexp(0, -x), exact where sigmoid(x) itself would round to 0 or 1.
        log_fake = np.logaddexp.reduce(-np.logaddexp(0.0, -g), axis=0)
        log_real = np.logaddexp.reduce(-np.logaddexp(0.0, g), axis=0)
        return log_fake - log_real
    if combine == "max":
        return g.max(axis=0)
    return g.mean(axis=0)  # logit_mean


@dataclass
class Ensemble:
    """Loaded member detectors (in the order of `names`) and how their scores combine.

    `device`, `dtype` and `bytes_per_image` answer what the scorer asks of any detector: the
    members run one after another on the same device, so a forward batch needs the memory of
    the hungriest member."""

    members: tuple[Detector, ...] = field(repr=False)
    names: tuple[str, ...]
    combine: str = "mean"

    def __post_init__(self) -> None:
        check_combine(self.combine)
        if len(self.members) != len(self.names) or len(self.members) < 2:
            raise ValueError("an ensemble has two or more members, each with a name")

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    @property
    def bytes_per_image(self) -> int:
        return max(m.bytes_per_image for m in self.members)

    def combined_gap(self, gaps: Sequence[np.ndarray]) -> np.ndarray:
        """The ensemble's logit gap per row from its members' (`combine_gaps`)."""
        return combine_gaps(gaps, self.combine)
