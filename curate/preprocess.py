"""Resize and normalise images exactly as the checkpoint's own image processor does.

The default path reproduces transformers' PIL processor: PIL resize with the checkpoint's
`resample` (bilinear, with PIL's antialiasing) to uint8, then rescale and normalise in
float32. The uint8 resize runs on CPU worker threads (PIL releases the GIL); the float
arithmetic runs on the model's device, so only uint8 crosses to a GPU.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from curate.model import PreprocessConfig


def resize(img: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """An RGB image resized to the checkpoint's size: HWC uint8."""
    if cfg.do_resize and img.size != (cfg.width, cfg.height):
        img = img.resize((cfg.width, cfg.height), resample=Image.Resampling(cfg.resample))
    arr = np.asarray(img, dtype=np.uint8)
    if arr.shape != (cfg.height, cfg.width, 3):
        raise ValueError(
            f"image is {arr.shape[1]}x{arr.shape[0]} but the model needs {cfg.width}x{cfg.height} "
            "and the checkpoint's processor does not resize"
        )
    return arr


def normalize(
    batch: np.ndarray | torch.Tensor,
    cfg: PreprocessConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """NHWC uint8 -> NCHW `pixel_values` on `device` in `dtype` (arithmetic in float32)."""
    t = torch.as_tensor(batch)
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    else:
        t = t.to(device)
    x = t.permute(0, 3, 1, 2).to(torch.float32)
    if cfg.do_rescale:
        x = x * cfg.rescale_factor
    if cfg.do_normalize:
        mean = torch.tensor(cfg.image_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(cfg.image_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.to(dtype).contiguous()
