"""Decode JPEGs on the GPU with nvJPEG (torchvision), falling back to the CPU per image."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from curate.pipeline.decode import image_bytes


def _nvjpeg_input(item: Any, max_pixels: int) -> bytes | None:
    """The bytes of a JPEG that nvJPEG decodes exactly as the CPU path would see it, else None.

    CMYK, EXIF-rotated and oversized JPEGs (and anything unreadable) take the CPU path, which
    knows how to convert, rotate or report them."""
    try:
        data = image_bytes(item)
        if not data or data[:2] != b"\xff\xd8":
            return None
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG" or img.mode not in ("RGB", "L"):
                return None
            if img.width * img.height > max_pixels or img.getexif().get(0x0112, 1) != 1:
                return None
        return data
    except Exception:
        return None


def decode_jpegs_on_device(
    items: Sequence[Any], device: torch.device, max_pixels: int
) -> dict[int, torch.Tensor]:
    """Decode the JPEGs among `items` on the GPU in one nvJPEG batch (torchvision).

    Returns {index: CHW uint8 RGB tensor on `device`} for the rows it decoded; the caller
    decodes the others on CPU. When the batch call fails, each image is retried alone, so one
    file nvJPEG rejects costs only its own row a CPU decode. Without torchvision: {}."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # torchvision missing or built for another torch
        return {}
    todo = {i: _nvjpeg_input(item, max_pixels) for i, item in enumerate(items)}
    todo = {i: torch.frombuffer(bytearray(d), dtype=torch.uint8) for i, d in todo.items() if d}
    if not todo:
        return {}
    index = list(todo)
    try:
        decoded = decode_jpeg([todo[i] for i in index], mode=ImageReadMode.RGB, device=device)
        return dict(zip(index, decoded, strict=True))
    except Exception:
        out = {}
        for i in index:
            try:
                out[i] = decode_jpeg(todo[i], mode=ImageReadMode.RGB, device=device)
            except Exception:
                continue
        return out
