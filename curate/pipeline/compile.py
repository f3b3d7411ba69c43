"""Compiled forward passes: inductor with weight freezing, paid for only by runs big enough.

On CPU, `torch.compile(..., options={"freezing": True})` prepacks the weights for oneDNN and
fuses bias + GELU into the GEMMs (benchmarks/RESULTS.md has the measured gain). Compiling
costs about a minute for the full-size detector on a 2-core CPU (inductor's FX graph cache on
disk can shorten it in a later process with the same model, dtype and batch size, not skip
it), so `CompiledModel` runs the model eagerly until its eager forward passes have
taken `after_seconds`, about what a first compile costs, and compiles then (the ski-rental
rule: a run never spends more than about twice what the better choice in hindsight would
have). A small run (`curate score one.jpg`, or any run of a tiny model) never compiles; a
long one compiles once, early, and says so through `compile_notices`.

Only batches of the size it compiled for run compiled; any other size (a run's last, short
batch, a batch with unreadable rows, an out-of-memory halving) runs eagerly, so a run
compiles exactly once. While a forward hook is registered (`captured_embeddings`), batches
run eagerly too: a compiled graph would skip it. If compiling fails (say, no C++ compiler),
the run goes on eagerly after one warning.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from curate.pipeline.batching import OutOfMemoryError

logger = logging.getLogger(__name__)

# compile="auto": seconds of eager forward passes before a model compiles, about what a first
# compile of the full-size detector costs on a 2-core CPU (RESULTS.md). At ~4 images/s that
# is a few hundred images: `curate score one.jpg` and small folders never compile.
COMPILE_AFTER_SECONDS = 60.0
COMPILE_MODES = (False, True, "auto")

_listeners: list[Callable[[str], None]] = []
_listeners_lock = threading.Lock()


@contextmanager
def compile_notices(listener: Callable[[str], None]) -> Iterator[None]:
    """Within the block, `listener` hears a one-line message when a model starts and ends
    compiling (a front end shows them beside its progress bar)."""
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


def _notify(message: str) -> None:
    logger.info(message)
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(message)


def check_compile(value: Any) -> bool | str:
    """`compile` as given to the scorer: True, False or "auto"."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if value in (True, False) and isinstance(value, (bool, int)):
        return bool(value)
    raise ValueError(f"compile must be True, False or 'auto', got {value!r}")


def wants_compile(mode: bool | str, device: torch.device) -> bool:
    """Whether a model on `device` is wrapped for compiling: always for True; for "auto" on
    CPU only (on a GPU the gain is not measured yet, and decoding is what limits it)."""
    return mode is True or (mode == "auto" and device.type == "cpu")


def inductor_options(device: torch.device) -> dict[str, Any] | None:
    # Freezing turns the weights into constants inductor can prepack for oneDNN; on GPUs
    # the default options are the tested ones.
    return {"freezing": True} if device.type == "cpu" else None


class CompiledModel:
    """A model that runs compiled for batches of `batch_size` images once its eager forward
    passes have taken `after_seconds`, and eagerly otherwise. Attributes it does not have (the
    model's `config`, its modules) are the model's; `_orig_mod` is the model, as on
    `torch.compile`'s own wrapper."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        batch_size: int,
        *,
        after_seconds: float = 0.0,
        name: str = "the model",
    ) -> None:
        self._orig_mod = model
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.after_seconds = float(after_seconds)
        self.name = name
        self.eager_seconds = 0.0
        self.compiled: Callable[..., Any] | None = None
        self.failed: str | None = None
        self.compile_seconds: float | None = None

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the wrapper itself lacks.
        return getattr(self.__dict__["_orig_mod"], name)

    def __call__(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        if not self._use_compiled(int(pixel_values.shape[0])):
            start = time.perf_counter()
            out = self._orig_mod(pixel_values=pixel_values, **kwargs)
            self.eager_seconds += time.perf_counter() - start
            return out
        if self.compiled is None:
            return self._compile_and_run(pixel_values, kwargs)
        return self.compiled(pixel_values=pixel_values, **kwargs)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def _use_compiled(self, n: int) -> bool:
        if self.failed is not None or n != self.batch_size or _has_hooks(self._orig_mod):
            return False
        return self.compiled is not None or self.eager_seconds >= self.after_seconds

    def _compile_and_run(self, pixel_values: torch.Tensor, kwargs: dict) -> Any:
        _notify(
            f"Compiling {self.name} for batches of {self.batch_size} on {self.device.type} "
            "(a one-off cost, about a minute on a small CPU) ..."
        )
        start = time.perf_counter()
        from torch._inductor import config as inductor_config

        options = inductor_options(self.device) or {}
        compiled = torch.compile(self._orig_mod, dynamic=False, options=options)
        try:
            # Also as the global config while compiling: torchao's int8 lowering reads
            # `freezing` from there, not from the options of this compile.
            with inductor_config.patch(options), warnings.catch_warnings():
                # torchao's int8 lowering copy-constructs tensors: noise, not news.
                warnings.filterwarnings("ignore", message="To copy construct from a tensor")
                out = compiled(pixel_values=pixel_values, **kwargs)
        except OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any compiler failure: go on eagerly
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.failed = f"{type(exc).__name__}: {first}"[:300]
            logger.warning("compiling %s failed (%s); scoring goes on uncompiled", self.name, first)
            _notify(f"Compiling {self.name} failed; scoring goes on uncompiled")
            return self._orig_mod(pixel_values=pixel_values, **kwargs)
        self.compiled = compiled
        self.compile_seconds = time.perf_counter() - start
        _notify(f"Compiled {self.name} in {self.compile_seconds:.0f} s")
        return out


def _has_hooks(model: torch.nn.Module) -> bool:
    """Whether a forward hook that a compiled graph would not call is registered."""
    from torch.nn.modules import module as nn_module

    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
