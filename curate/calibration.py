"""A fitted probability calibration, saved as JSON beside a model id and applied by the scorer.

Both temperature scaling and Platt scaling act on the logit gap `g = logit_fake - logit_real`
(for a two-class softmax, `fake_prob = sigmoid(g)`): calibrated `fake_prob = sigmoid(a*g + b)`,
with `a = 1/T, b = 0` for a temperature `T`. Fitting lives in `curate.evaluate`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Calibration:
    slope: float = 1.0
    intercept: float = 0.0
    method: str = "temperature"
    model: str | None = None

    @classmethod
    def temperature(cls, t: float, model: str | None = None) -> Calibration:
        if not t > 0:
            raise ValueError(f"temperature must be > 0, got {t}")
        return cls(slope=1.0 / float(t), intercept=0.0, method="temperature", model=model)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return cls(
                slope=float(data["slope"]),
                intercept=float(data.get("intercept", 0.0)),
                method=str(data.get("method", "platt")),
                model=data.get("model"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read calibration file {os.fspath(path)!r}: {exc}") from None


def resolve_calibration(
    value: Calibration | float | str | os.PathLike | None,
) -> Calibration | None:
    """None, a `Calibration`, a temperature (number), or the path of a saved calibration."""
    if value is None or isinstance(value, Calibration):
        return value
    if isinstance(value, (int, float)):
        return Calibration.temperature(float(value))
    return Calibration.load(value)
