"""Hugging Face image classifiers as detectors: load the weights, the label mapping
(`labels.py`) and the preprocessing (`processors.py`) of a Hub id or local checkpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from curate.detectors.base import (
    MODEL_ENV_VAR,
    Detector,
    ModelLoadError,
    default_model,
    import_torchao_quietly,
    resolve_device,
    resolve_dtype,
)
from curate.detectors.labels import label_indices
from curate.detectors.processors import PreprocessConfig

__all__ = [
    "PreprocessConfig",
    "label_indices",
    "load_detector",
    "load_preprocess_config",
    "model_load_error",
]


def model_load_error(model: str, exc: Exception) -> ModelLoadError:
    if os.path.isdir(model):
        return ModelLoadError(f"Could not load a detector from the directory {model!r}: {exc}")
    if os.path.sep in model and not os.path.exists(model) and model.count("/") != 1:
        return ModelLoadError(f"Model path {model!r} does not exist.")
    return ModelLoadError(
        f"Could not load model {model!r}: it is not in the local Hugging Face cache and the Hub "
        f"could not be reached; download it where the Hub is reachable "
        f"(`hf download {model}`) or point --model (or {MODEL_ENV_VAR}) at a local copy."
    )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Keep transformers' load reports and per-tensor loading bar out of users' own output."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_preprocess_config(model: str, revision: str | None = None) -> PreprocessConfig:
    """The checkpoint's preprocessing, read through transformers' own PIL image processor for
    it (configs only, no weights), or a ModelLoadError saying why it cannot be reproduced."""
    import_torchao_quietly()  # before transformers' processors import it, loudly
    from transformers import AutoImageProcessor
    from transformers.utils import cached_file

    try:
        cached_file(model, "preprocessor_config.json", revision=revision)
    except OSError as exc:
        raise model_load_error(model, exc) from None
    try:
        with _quiet_transformers():
            processor = AutoImageProcessor.from_pretrained(
                model, revision=revision, backend="pil", trust_remote_code=False
            )
    except (OSError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"Could not read the image processor of {model!r}: {first}") from None
    return PreprocessConfig.from_processor(processor)


def load_detector(
    model: str | None = None,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    rank: int | None = None,
    synthetic_labels: Sequence[str] | str | None = None,
) -> Detector:
    """Load a Hub id or local directory as an eval-mode image classifier.

    `synthetic_labels` names the classes that mean synthetic (a list, or a comma-separated
    string); by default they are read from `id2label` through the synonym table in
    `curate.detectors.labels`. safetensors only and never remote code: a checkpoint is data,
    not a program."""
    import_torchao_quietly()
    from transformers import AutoModelForImageClassification

    model = model or default_model()
    dev = resolve_device(device, rank)
    torch_dtype = resolve_dtype(dtype, dev)
    preprocess = load_preprocess_config(model, revision)
    load = dict(revision=revision, dtype=torch_dtype, use_safetensors=True, trust_remote_code=False)
    try:
        with _quiet_transformers():
            try:
                net = AutoModelForImageClassification.from_pretrained(
                    model, attn_implementation="sdpa", **load
                )
            except ValueError as exc:
                # Architectures without attention (ConvNeXt) refuse the SDPA request.
                if "attention implementation" not in str(exc):
                    raise
                net = AutoModelForImageClassification.from_pretrained(model, **load)
    except OSError as exc:
        raise model_load_error(model, exc) from None
    except ValueError as exc:
        raise ModelLoadError(f"Could not load model {model!r}: {exc}") from None
    fake_indices, real_indices = label_indices(net.config.id2label, synthetic_labels)
    net.to(dev).eval()
    return Detector(
        model=net,
        device=dev,
        dtype=torch_dtype,
        fake_indices=fake_indices,
        real_indices=real_indices,
        preprocess=preprocess,
        bytes_per_image=_activation_bytes(net.config, preprocess, torch_dtype),
    )


def _activation_bytes(config: Any, preprocess: PreprocessConfig, dtype: torch.dtype) -> int:
    """Peak activation memory of one image in a ViT-style encoder (widest layer, a few live
    copies) plus its pixels in float32 and a full-size decode; within 2x, which is why
    batch_size="auto" fills only half the free memory."""
    vision = getattr(config, "vision_config", config)
    patch = getattr(vision, "patch_size", 16)
    hidden = getattr(vision, "hidden_size", 768)
    if isinstance(hidden, (list, tuple)):  # ConvNeXt-style stages
        hidden = max(hidden)
    width = max(getattr(vision, "intermediate_size", 4 * hidden), 3 * hidden)
    tokens = (preprocess.height // patch) * (preprocess.width // patch)
    return 4 * tokens * width * dtype.itemsize + 16 * 2**20
