"""curate: find and remove synthetic (AI-generated) images in image datasets.

The names below load on first use (PEP 562), so `import curate.filtering` or `curate --help`
never pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "DEFAULT_MODEL": "curate.detectors",
    "ModelLoadError": "curate.detectors",
    "load_detector": "curate.detectors",
    "Calibration": "curate.calibration",
    "DeepfakeScorer": "curate.scorer",
    "DecisionRule": "curate.filtering",
    "score_dataset": "curate.integrations.hf_datasets",
}

__all__ = [
    "DEFAULT_MODEL",
    "Calibration",
    "DecisionRule",
    "DeepfakeScorer",
    "ModelLoadError",
    "__version__",
    "load_detector",
    "score_dataset",
]

if TYPE_CHECKING:
    from curate.calibration import Calibration
    from curate.detectors import DEFAULT_MODEL, ModelLoadError, load_detector
    from curate.filtering import DecisionRule
    from curate.integrations.hf_datasets import score_dataset
    from curate.scorer import DeepfakeScorer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
