"""int8 on the CPU's int8 units (AVX-512 VNNI, AMX): the opt-in fastest mode.

`quantize="int8"` converts the model's linear layers with torchao (the maintained PyTorch
quantisation library, extra `curate[int8]`): weights int8 per output channel, activations
int8 per token, scaled dynamically on every batch, so no calibration set is needed and no
image's range is clipped by another's. Inductor then lowers the int8 matmuls to oneDNN's
VNNI / AMX kernels, so the mode runs compiled (from the first batch: the user asked for
speed). Attention, layer norms and the classification layer stay in the model's dtype. It
moves fake_prob further from the float32 reference than bf16 does; the bound is measured in
benchmarks/RESULTS.md and tested in tests/pipeline/test_quantize.py.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

import torch

QUANTIZE_MODES = (None, "int8")
# Layers narrower than this gain nothing from int8 and only add rounding error.
MIN_FEATURES = 16
INSTALL_HINT = "pip install 'curate[int8]'"


def check_quantize(value: Any) -> str | None:
    """`quantize` as given to the scorer: None or "int8"."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and value.strip().lower() in ("int8", "none"):
        return None if value.strip().lower() == "none" else "int8"
    raise ValueError(f"quantize must be None or 'int8', got {value!r}")


def quantizable(module: torch.nn.Module, name: str) -> bool:
    """The layers int8 applies to: plain linear layers of the encoder, not the classifier
    (whose two outputs are the score) nor ones too narrow to gain."""
    return (
        type(module) is torch.nn.Linear
        and name.rsplit(".", 1)[-1] != "classifier"
        and min(module.in_features, module.out_features) >= MIN_FEATURES
    )


def quantize_int8(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` (changed in place) with int8 weights and dynamically quantised int8
    activations in its linear layers; a ValueError saying what to install or change if this
    machine cannot."""
    if device.type != "cpu":
        raise ValueError(
            f"quantize='int8' runs on CPU (its int8 kernels are the CPU's); the model is on "
            f"{device.type}: use device='cpu', or dtype='bfloat16' on a GPU"
        )
    with _quiet_import():
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError:
            raise ValueError(f"quantize='int8' needs torchao: {INSTALL_HINT}") from None
    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=quantizable)
    return model


@contextmanager
def _quiet_import():
    # torchao logs a warning for each optional CUDA kernel library a CPU build lacks; they
    # say nothing about the CPU path, so they stay out of the user's terminal.
    log = logging.getLogger("torchao")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
