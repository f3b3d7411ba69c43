"""int8 on the CPU's int8 units (AVX-512 VNNI, AMX): the opt-in fastest mode.

`quantize="int8"` runs the model's linear layers (and its patch embedding) in int8 through
PyTorch's x86 quantisation path: the model is exported (`torch.export`), annotated by
torchao's `X86InductorQuantizer` (extra `curate[int8]`) with int8 weights per output
channel and uint8 activations scaled dynamically on every batch (no calibration set), and
compiled with freezing, which lowers the int8 matmuls to oneDNN's VNNI / AMX kernels. The
rest (attention, layer norms, the classifier) runs in the detector's dtype. It only pays
compiled, so it compiles from the first batch of its batch size.

Its bound is looser than bf16's (measured in benchmarks/RESULTS.md, tested in
tests/pipeline/test_quantize.py), and activations share one scale per batch: an image's
score moves slightly with the images it is batched with, within that bound.
"""

from __future__ import annotations

from typing import Any

import torch

from curate.detectors.base import import_torchao_quietly

QUANTIZE_MODES = (None, "int8")
INSTALL_HINT = "pip install 'curate[int8]'"
# The batch sizes the exported graph accepts (compiled for one at a time).
MAX_BATCH = 4096


def check_quantize(value: Any) -> str | None:
    """`quantize` as given to the scorer: None or "int8"."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and value.strip().lower() in ("int8", "none"):
        return None if value.strip().lower() == "none" else "int8"
    raise ValueError(f"quantize must be None or 'int8', got {value!r}")


def cpu_has_int8_units() -> bool:
    """Whether this CPU multiplies int8 in hardware (AVX-512 VNNI or AMX): without them the
    x86 int8 kernels are slower than bf16 and saturate."""
    is_vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return bool(is_vnni() or is_amx())


def int8_problem(device: torch.device) -> str | None:
    """Why quantize='int8' cannot run on `device` here, in one line saying what to change
    (None: it can). Checked before a model loads, and again when it quantises."""
    if device.type != "cpu":
        return (
            f"quantize='int8' runs on CPU (its int8 kernels are the CPU's), not {device.type}: "
            "use device='cpu', or dtype='bfloat16' on a GPU"
        )
    if not cpu_has_int8_units():
        return (
            "quantize='int8' needs a CPU with int8 units (AVX-512 VNNI or AMX); this one has "
            "none, so int8 would be slower than the default: leave quantize unset"
        )
    if not import_torchao_quietly():
        return f"quantize='int8' needs torchao: {INSTALL_HINT}"
    return None


class Int8Classifier(torch.nn.Module):
    """A quantised, exported classifier called like the original: `model(pixel_values=x)`
    gives an object with `.logits`; int8 layers inside, the rest autocast to `dtype`."""

    def __init__(self, graph: torch.nn.Module, config: Any, dtype: torch.dtype) -> None:
        from transformers.modeling_outputs import ImageClassifierOutput

        super().__init__()
        self.graph = graph
        self.config = config
        self.dtype = dtype
        self._output = ImageClassifierOutput

    def forward(self, pixel_values: torch.Tensor) -> Any:
        reduced = self.dtype != torch.float32
        with torch.autocast("cpu", dtype=self.dtype, enabled=reduced):
            logits = self.graph(pixel_values.float())
        return self._output(logits=logits)


def quantize_int8(
    model: torch.nn.Module, device: torch.device, dtype: torch.dtype, size: tuple[int, int]
) -> Int8Classifier:
    """`model` (an eval-mode classifier taking `pixel_values` of `size` = (height, width))
    with int8 linear layers; a ValueError saying what to install or change if it cannot be."""
    problem = int8_problem(device)
    if problem:
        raise ValueError(problem)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    model = model.float().eval()
    _plain_padding(model)
    example = torch.zeros(2, 3, *size)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        with torch.no_grad():
            graph = torch.export.export(
                _LogitsOf(model), (example,), dynamic_shapes={"pixel_values": {0: batch}}
            ).module()
            quantizer = x86.X86InductorQuantizer()
            quantizer.set_global(x86.get_default_x86_inductor_quantization_config(is_dynamic=True))
            prepared = prepare_pt2e(graph, quantizer)
            prepared(example)  # the weight observers read the weights
            graph = convert_pt2e(prepared)
    except Exception as exc:  # noqa: BLE001 - export or annotation of an unusual model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"quantize='int8' cannot convert this model ({first[:200]})") from None
    int8 = Int8Classifier(graph, getattr(model, "config", None), dtype)
    int8.training = False  # not .eval(): an exported graph refuses train()/eval()
    return int8


class _LogitsOf(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def _plain_padding(model: torch.nn.Module) -> None:
    # padding="valid" exports as aten.conv2d.padding, which the quantiser does not match;
    # zero padding is the same convolution.
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.padding == "valid":
            module.padding = (0, 0)
