"""Forward batches that fit: a batch size picked from free GPU memory, halved on out-of-memory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from curate.detectors.base import Detector

# torch.cuda.OutOfMemoryError is an alias of it on recent torch; older ones only have that.
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
logger = logging.getLogger(__name__)
CPU_BATCH = 8


def auto_batch_size(detector: Detector) -> int:
    """A power of two that fills about half the free memory of the detector's GPU (8 on CPU)."""
    if detector.device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(detector.device)
    fits = max(1, int(0.5 * free // detector.bytes_per_image))
    return min(512, 1 << (fits.bit_length() - 1))


class HalvingForward:
    """Run `fn` over rows in forward batches of at most `limit`; an out-of-memory error halves
    the batch for this and every later call, down to one row (which then raises)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.limit: int | None = None

    def __call__(
        self, fn: Callable[[Sequence[Any]], np.ndarray], rows: Sequence[Any]
    ) -> np.ndarray:
        step = min(len(rows), self.limit or len(rows))
        outs, i = [], 0
        while i < len(rows):
            try:
                outs.append(fn(rows[i : i + step]))
                i += step
            except OutOfMemoryError:
                if step == 1:
                    raise
                step = (step + 1) // 2
                self.limit = step
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                logger.warning("out of memory: forward batch halved to %d images", step)
        return np.concatenate(outs)
