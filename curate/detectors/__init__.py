"""Detectors: a classifier checkpoint loaded for scoring, and how its logits become fake_prob."""

from curate.detectors.base import (
    DEFAULT_MODEL,
    MODEL_ENV_VAR,
    Detector,
    ModelLoadError,
    default_model,
    resolve_device,
    resolve_dtype,
)
from curate.detectors.hf import (
    PreprocessConfig,
    label_indices,
    load_detector,
    load_preprocess_config,
    model_load_error,
)

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ENV_VAR",
    "Detector",
    "ModelLoadError",
    "PreprocessConfig",
    "default_model",
    "label_indices",
    "load_detector",
    "load_preprocess_config",
    "model_load_error",
    "resolve_device",
    "resolve_dtype",
]
