"""curate: find and remove synthetic (AI-generated) images in image datasets."""

from curate.calibration import Calibration
from curate.integrations.hf_datasets import score_dataset
from curate.model import DEFAULT_MODEL, ModelLoadError, load_detector
from curate.scorer import DeepfakeScorer

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Calibration",
    "DeepfakeScorer",
    "ModelLoadError",
    "__version__",
    "load_detector",
    "score_dataset",
]
