"""Hugging Face image classifiers as detectors: load weights, read labels and preprocessing."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch

from curate.detectors.base import (
    MODEL_ENV_VAR,
    Detector,
    ModelLoadError,
    default_model,
    resolve_device,
    resolve_dtype,
)


@dataclass(frozen=True)
class PreprocessConfig:
    """What the checkpoint's `preprocessor_config.json` asks for (SigLIP-style fixed size)."""

    height: int
    width: int
    resample: int = 2  # PIL.Image.BILINEAR
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> PreprocessConfig:
        size = cfg.get("size") or {}
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if "height" not in size or "width" not in size:
            raise ModelLoadError(
                f"Unsupported preprocessing size {size!r}: curate supports fixed-size "
                "processors ({'height': H, 'width': W}) such as SigLIP's."
            )
        if cfg.get("do_center_crop") or cfg.get("do_pad"):
            raise ModelLoadError(
                "Unsupported preprocessing: center crop / padding are not implemented."
            )
        mean = cfg.get("image_mean", (0.5, 0.5, 0.5))
        std = cfg.get("image_std", (0.5, 0.5, 0.5))
        if isinstance(mean, (int, float)):
            mean = (mean,) * 3
        if isinstance(std, (int, float)):
            std = (std,) * 3
        return cls(
            height=int(size["height"]),
            width=int(size["width"]),
            resample=int(cfg.get("resample", 2)),
            do_resize=bool(cfg.get("do_resize", True)),
            do_rescale=bool(cfg.get("do_rescale", True)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)),
            do_normalize=bool(cfg.get("do_normalize", True)),
            image_mean=tuple(float(m) for m in mean),
            image_std=tuple(float(s) for s in std),
        )


def _label_index(id2label: dict[Any, str], name: str) -> int:
    matches = [int(i) for i, label in id2label.items() if str(label).strip().lower() == name]
    if len(matches) != 1:
        raise ModelLoadError(
            f"The checkpoint's id2label {dict(id2label)!r} must name exactly one '{name}' class "
            "(case-insensitive); curate never guesses which index is which."
        )
    return matches[0]


def label_indices(id2label: dict[Any, str]) -> tuple[int, int]:
    """(fake_index, real_index), read by name from the checkpoint's `id2label`."""
    return _label_index(id2label, "fake"), _label_index(id2label, "real")


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


def load_preprocess_config(model: str, revision: str | None = None) -> PreprocessConfig:
    from transformers.utils import cached_file

    try:
        path = cached_file(model, "preprocessor_config.json", revision=revision)
    except OSError as exc:
        raise model_load_error(model, exc) from None
    with open(path, encoding="utf-8") as f:
        return PreprocessConfig.from_dict(json.load(f))


def load_detector(
    model: str | None = None,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    rank: int | None = None,
) -> Detector:
    """Load a Hub id or local directory as an eval-mode image classifier.

    safetensors only and never remote code: a checkpoint is data, not a program."""
    from transformers import AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    model = model or default_model()
    dev = resolve_device(device, rank)
    torch_dtype = resolve_dtype(dtype, dev)
    preprocess = load_preprocess_config(model, revision)
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    # Keep load reports and the per-tensor loading bar out of users' own progress bars.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        net = AutoModelForImageClassification.from_pretrained(
            model,
            revision=revision,
            dtype=torch_dtype,
            attn_implementation="sdpa",
            use_safetensors=True,
            trust_remote_code=False,
        )
    except OSError as exc:
        raise model_load_error(model, exc) from None
    except ValueError as exc:
        raise ModelLoadError(f"Could not load model {model!r}: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    fake_index, real_index = label_indices(net.config.id2label)
    net.to(dev).eval()
    return Detector(
        model=net,
        device=dev,
        dtype=torch_dtype,
        fake_indices=(fake_index,),
        real_indices=(real_index,),
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
