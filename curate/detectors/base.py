"""What a detector is: a loaded classifier, the device and dtype it runs in, and how its
logits become a fake probability. Concrete loaders (Hugging Face classifiers) live beside it."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from curate.detectors.hf import PreprocessConfig

DEFAULT_MODEL = "prithivMLmods/open-deepfake-detection"
# Lets a user (or an offline machine) point every front end at a local copy without flags.
MODEL_ENV_VAR = "CURATE_MODEL"

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class ModelLoadError(RuntimeError):
    """A detector could not be loaded; the message is one sentence a user can act on."""


def import_torchao_quietly() -> bool:
    """Import torchao now, if it is installed (extra `curate[int8]`), with its import-time
    warnings silenced, and transformers' quantizers, which import more of it; returns whether
    it is there. transformers imports both with its image processors and models, and they log
    a warning for each CUDA kernel library a CPU build lacks and each deprecated registration:
    noise on every model load, not news."""
    if "torchao" in sys.modules:
        return sys.modules["torchao"] is not None  # None: its import is blocked
    if importlib.util.find_spec("torchao") is None:
        return False
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        import torchao  # noqa: F401
        import transformers.quantizers  # noqa: F401
    except ImportError:  # a broken install: as if it were not there
        return False
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
    return True


def default_model() -> str:
    return os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL


@dataclass
class Detector:
    """A loaded classifier and what the scorer needs to use it.

    `fake_indices` / `real_indices` are the classes that mean synthetic / real (two or more
    classes in all); `logit_gap` turns a row of logits into one number `g` with
    `fake_prob = sigmoid(g)` (the softmax mass of the synthetic classes), which is what a
    `Calibration` rescales."""

    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    fake_indices: tuple[int, ...]
    real_indices: tuple[int, ...]
    preprocess: PreprocessConfig
    # Activation memory of one image's forward pass (bytes), for batch_size="auto".
    bytes_per_image: int = 256 * 2**20

    @property
    def fake_index(self) -> int:
        """The synthetic class of a two-class checkpoint."""
        (i,) = self.fake_indices
        return i

    @property
    def real_index(self) -> int:
        """The real class of a two-class checkpoint."""
        (i,) = self.real_indices
        return i

    @torch.inference_mode()
    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits in float32 for a normalised batch already on `device` in `dtype`."""
        return self.model(pixel_values=pixel_values).logits.float()

    def logit_gap(self, logits: np.ndarray) -> np.ndarray:
        """log P(synthetic) - log P(real) per row, in float64: for two classes the plain logit
        difference, for more the difference of the log-sum-exps of each side."""
        logits = np.asarray(logits, dtype=np.float64)
        return _logsumexp(logits[:, list(self.fake_indices)]) - _logsumexp(
            logits[:, list(self.real_indices)]
        )


def _logsumexp(x: np.ndarray) -> np.ndarray:
    if x.shape[1] == 1:
        return x[:, 0]
    top = x.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]


def resolve_device(
    device: str | torch.device | None = None, rank: int | None = None
) -> torch.device:
    """`None`/"auto" picks cuda > mps > cpu; with a `rank` (datasets `with_rank`, one process
    per GPU) "auto" and a bare "cuda" pick GPU `rank % device_count`."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    if name == "cuda" and rank is not None and torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(
            f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Device {device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'."
        )
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware: AMX or AVX-512 BF16 on x86, the BF16
    extension on Arm. Read from the kernel's CPU flags, not guessed from a model name; False
    where they cannot be read. `CURATE_CPU_BF16=0/1` overrides the detection."""
    forced = os.environ.get("CURATE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                # x86 lists "flags", Arm "Features"; every core lists the same set.
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`None`/"auto": bfloat16 on CUDA GPUs that support it (else float16), float16 on MPS;
    on CPU bfloat16 where the CPU has native bf16 (AMX / AVX-512 BF16), else float32.

    bf16 on such CPUs is several times faster and moves fake_prob by well under 0.01 against
    float32 (tested on the full-size architecture); `dtype="float32"` is the exact path that
    reproduces the reference processor + model loop."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"Unsupported dtype {dtype}: use float32, bfloat16 or float16.")
        return dtype
    name = (dtype or "auto").strip().lower()
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if name not in DTYPES:
        raise ValueError(
            f"Unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'."
        )
    return DTYPES[name]
