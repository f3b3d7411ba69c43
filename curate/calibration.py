"""A fitted probability calibration, saved as JSON beside a model id and applied by the scorer.

Both temperature scaling and Platt scaling act on the logit gap `g = logit_fake - logit_real`
(for a two-class softmax, `fake_prob = sigmoid(g)`): calibrated `fake_prob = sigmoid(a*g + b)`,
with `a = 1/T, b = 0` for a temperature `T`. Fitting lives in `curate.evaluation`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from curate.io.atomic import atomic_write_text


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

    def apply(self, gap: np.ndarray) -> np.ndarray:
        """Calibrated fake probability from the logit gap: sigmoid(slope * gap + intercept)."""
        return _sigmoid(self.slope * np.asarray(gap, dtype=np.float64) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

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


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Split by sign so neither branch overflows exp().
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def fake_probability(gap: np.ndarray, calibration: Calibration | None = None) -> np.ndarray:
    """fake_prob (float64) from the logit gap, calibrated when a calibration is given."""
    if calibration is not None:
        return calibration.apply(gap)
    return _sigmoid(np.asarray(gap, dtype=np.float64))


def resolve_calibration(
    value: Calibration | float | str | os.PathLike | None,
) -> Calibration | None:
    """None, a `Calibration`, a temperature (number), or the path of a saved calibration."""
    if value is None or isinstance(value, Calibration):
        return value
    if isinstance(value, (int, float)):
        return Calibration.temperature(float(value))
    return Calibration.load(value)
