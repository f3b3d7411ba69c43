"""DeepfakeScorer: the one batched callable every front end uses.

`datasets.map(scorer, batched=True)`, the FiftyOne operator, the CLI and Ray Data all call
it on a batch of images and get back the score columns. It holds settings only; the model
loads on first use in the process (and on the device) that calls it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from curate import schema
from curate.calibration import Calibration, fake_probability, resolve_calibration
from curate.detectors import Detector, default_model, load_detector, resolve_device, resolve_dtype
from curate.pipeline.batching import HalvingForward, auto_batch_size
from curate.pipeline.decode import DEFAULT_MAX_PIXELS, read_image
from curate.pipeline.nvjpeg import decode_jpegs_on_device
from curate.pipeline.preprocess import (
    TORCH_RESAMPLE,
    normalize,
    pinned_batch,
    resize,
    resize_on_device,
)
from curate.provenance import ProvenanceChecker, describe, resolve_provenance

RESIZE_MODES = ("auto", "pil", "torch")
DECODE_MODES = ("cpu", "nvjpeg")
logger = logging.getLogger(__name__)


def _one_thread_after_fork() -> None:
    # torch's CPU thread pool (GNU OpenMP) hangs in a process forked after it has run, as
    # `datasets.map(num_proc=...)` workers are by default; with one intra-op thread it is
    # never entered. Workers that need threads are started with "spawn" (score_dataset).
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_one_thread_after_fork)


def _setting(value: Any) -> Any:
    """torch objects as plain strings, so pickles and fingerprints are stable across processes."""
    if isinstance(value, (torch.device, torch.dtype)):
        return str(value).removeprefix("torch.")
    return value


class DeepfakeScorer:
    """Score images as Fake/Real.

    Args:
        model: Hub id or local directory (default: `$CURATE_MODEL` or
            `prithivMLmods/open-deepfake-detection`).
        revision: Hub revision (branch, tag or commit) to pin.
        device: "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:1", ... or a `torch.device`.
        dtype: "auto" (bf16 on GPUs; on CPU bf16 where the CPU has native bf16 — AMX or
            AVX-512 BF16 — else fp32), "float32" (the exact path: reproduces the reference
            processor + model loop), "bfloat16", "float16" or a `torch.dtype`.
        batch_size: images per forward pass; larger inputs are split into chunks of this size.
            "auto" picks one from free GPU memory (8 on CPU). Either way an out-of-memory
            error halves the forward batch (and keeps it halved) instead of failing the run.
        image_column: the column read when called on a batch dict.
        draft: decode JPEGs at reduced scale (faster, approximate; see the manual, "Fidelity").
        max_pixels: images larger than this are refused as decompression bombs.
        num_workers: decode threads (default: up to 8, one per CPU).
        calibration: a `Calibration`, a temperature, or the path of a saved calibration JSON.
        with_logits: also return `fake_logit` / `real_logit`.
        resize: "pil" resizes on CPU threads exactly as the checkpoint's processor does;
            "torch" resizes the full decode on the model's device (antialiased `interpolate`,
            within a tested bound of "pil", see the manual, "Fidelity"); "auto" (default) is
            "torch" on CUDA and "pil" elsewhere.
        decode: "cpu" (PIL on worker threads) or "nvjpeg": JPEGs decoded in batches on the
            GPU by torchvision, anything else (and any JPEG nvJPEG refuses) on CPU.
        compile: `torch.compile` the model once loaded (slow first batch, faster after; on
            CPU with inductor's weight freezing).
        provenance: also report provenance evidence (C2PA, generator metadata) read from
            the file bytes: True, "watermark" (adds the opt-in invisible-watermark check) or
            a `curate.provenance.ProvenanceChecker`; see the manual, "Provenance".

    Called on a batch dict it returns only the new columns: `fake_prob`, `real_prob`
    (float32, summing to 1), `deepfake_label` ("Fake"/"Real") and `deepfake_error` (null, or
    why the row's image could not be scored, in which case the other three are null).
    """

    def __init__(
        self,
        model: str | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | str = 16,
        image_column: str = "image",
        *,
        draft: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        num_workers: int | None = None,
        calibration: Calibration | float | str | None = None,
        with_logits: bool = False,
        resize: str = "auto",
        decode: str = "cpu",
        compile: bool = False,
        provenance: bool | str | ProvenanceChecker | None = False,
    ) -> None:
        if batch_size != "auto" and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
        if decode == "nvjpeg" and resize == "pil":
            raise ValueError(
                "decode='nvjpeg' leaves images on the GPU: use resize='torch' or 'auto'"
            )
        self.model = model or default_model()
        self.revision = revision
        self.device = _setting(device)
        self.dtype = _setting(dtype)
        self.batch_size = batch_size
        self.image_column = image_column
        self.draft = bool(draft)
        self.max_pixels = int(max_pixels)
        self.num_workers = num_workers
        self.calibration = resolve_calibration(calibration)
        self.with_logits = bool(with_logits)
        self.resize = resize
        self.decode = decode
        self.compile = bool(compile)
        self.provenance = resolve_provenance(provenance)
        self._reset_runtime()

    # -- pickling: settings only ------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __getstate__(self) -> dict[str, Any]:
        return self._settings()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._detector: Detector | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid: int | None = None
        self._lock = threading.Lock()
        self._forward_batches: HalvingForward | None = None
        self._auto_chunk: int | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"DeepfakeScorer({args})"

    # -- lazy runtime -------------------------------------------------------------------------
    def load(self, rank: int | None = None) -> Detector:
        """Load the model now (it otherwise loads on the first batch). `rank` picks the GPU."""
        with self._lock:
            if self._detector is None:
                detector = load_detector(
                    self.model, self.revision, self.device, self.dtype, rank=rank
                )
                self._check_options(detector)
                fitted_for = self.calibration.model if self.calibration is not None else None
                if fitted_for and fitted_for != self.model:
                    logger.warning(
                        "calibration was fitted for %r but the scorer uses %r: its "
                        "probabilities may be miscalibrated",
                        fitted_for,
                        self.model,
                    )
                if self.compile:
                    # On CPU, freezing lets inductor prepack the weights for oneDNN and fuse
                    # bias + GELU into the GEMMs: measured 1.3x over eager in bf16 (RESULTS.md).
                    cpu = detector.device.type == "cpu"
                    options = {"freezing": True} if cpu else None
                    detector.model = torch.compile(detector.model, options=options)
                self._forward_batches = HalvingForward(detector.device)
                self._detector = detector
            return self._detector

    def _check_options(self, detector: Detector) -> None:
        if self.decode == "nvjpeg" and detector.device.type != "cuda":
            raise ValueError(f"decode='nvjpeg' needs a CUDA device, not {detector.device}")
        if self.resize == "torch" and detector.preprocess.resample not in TORCH_RESAMPLE:
            raise ValueError(
                f"resize='torch' cannot reproduce the checkpoint's resample="
                f"{detector.preprocess.resample}; use resize='pil'"
            )

    def resize_mode(self, detector: Detector | None = None) -> str:
        """ "pil" or "torch": what `resize` means for the loaded model and its device."""
        detector = detector or self.detector
        if self.resize != "auto":
            return self.resize
        gpu = detector.device.type == "cuda" or self.decode == "nvjpeg"
        return "torch" if gpu and detector.preprocess.resample in TORCH_RESAMPLE else "pil"

    def chunk_size(self, detector: Detector | None = None) -> int:
        """Images decoded and sent to the model together (`batch_size`, resolved if "auto")."""
        if self.batch_size != "auto":
            return self.batch_size
        if self._auto_chunk is None:
            # Sized once: later, the caching allocator's own blocks would read as used.
            self._auto_chunk = auto_batch_size(detector or self.detector)
        return self._auto_chunk

    @property
    def detector(self) -> Detector:
        return self.load()

    def _executor(self) -> ThreadPoolExecutor:
        # Threads do not survive a fork; a pool made before one is rebuilt in the child.
        if self._pool is None or self._pool_pid != os.getpid():
            workers = self.num_workers or min(8, os.cpu_count() or 1)
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="curate-decode")
            self._pool_pid = os.getpid()
        return self._pool

    @property
    def columns(self) -> tuple[str, ...]:
        extra = self.provenance.columns if self.provenance is not None else ()
        logits = schema.LOGIT_COLUMNS if self.with_logits else ()
        return schema.SCORE_COLUMNS + logits + extra

    @property
    def features(self):
        """`datasets.Features` of the columns this scorer adds."""
        return schema.datasets_features(self.columns)

    def metadata(self, **extra: Any) -> dict[str, str]:
        """The settings that decide this scorer's scores as `curate.*` Parquet schema-metadata
        entries (dtype and device type as resolved); `extra` (say `threshold=0.5`) is added."""
        from curate import __version__

        detector = self._detector
        if detector is not None:
            dtype, device = str(detector.dtype).removeprefix("torch."), detector.device.type
        else:
            try:
                dev = resolve_device(self.device)
                dtype = str(resolve_dtype(self.dtype, dev)).removeprefix("torch.")
                device = dev.type
            except ValueError:
                dtype, device = str(self.dtype), str(self.device)
        meta: dict[str, Any] = {
            "model": self.model,
            "revision": self.revision,
            "dtype": dtype,
            "draft": self.draft,
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "version": __version__,
            "resize": self.resize,
            "decode": self.decode,
            "max_pixels": self.max_pixels,
            "device_type": device,
        }
        if self.provenance is not None:
            meta["provenance"] = describe(self.provenance)
        meta.update(extra)
        return schema.metadata_entries(meta)

    # -- scoring ------------------------------------------------------------------------------
    def __call__(self, batch: dict[str, Sequence[Any]], rank: int | None = None) -> dict[str, list]:
        """Score `batch[image_column]`; `rank` is what `datasets.map(with_rank=True)` passes."""
        if self.image_column not in batch:
            raise KeyError(
                f"image column {self.image_column!r} not in batch (columns: {sorted(batch)}); "
                "pass image_column=... to DeepfakeScorer"
            )
        if self._detector is None:
            self.load(rank)
        return self.score_images(batch[self.image_column])

    def score_images(self, images: Iterable[Any]) -> dict[str, list]:
        """Score a sequence of images; returns one list per output column, in input order."""
        images = list(images)
        out = {c: schema.TypedColumn(c, [None] * len(images)) for c in self.columns}
        if not images:
            return out
        detector = self.detector
        size = self.chunk_size(detector)
        starts = range(0, len(images), size)
        # Decode chunk k+1 on worker threads while chunk k runs through the model.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="curate-prefetch") as prefetch:
            pending = prefetch.submit(self._prepare, images[0:size], detector)
            for start in starts:
                arrays, errors = pending.result()
                nxt = start + size
                if nxt < len(images):
                    pending = prefetch.submit(self._prepare, images[nxt : nxt + size], detector)
                self._fill(out, start, arrays, errors, detector)
        if self.provenance is not None:
            found = self.provenance.check_many(images, self._executor())
            out.update({c: schema.TypedColumn(c, v) for c, v in found.items()})
        return out

    def _prepare(self, items: list[Any], detector: Detector) -> tuple[list, list]:
        on_gpu: dict[int, torch.Tensor] = {}
        if self.decode == "nvjpeg":
            on_gpu = decode_jpegs_on_device(items, detector.device, self.max_pixels)
        full = self.resize_mode(detector) == "torch"
        rest = [i for i in range(len(items)) if i not in on_gpu]
        results = self._executor().map(lambda i: self._load_resized(items[i], detector, full), rest)
        arrays: list = [None] * len(items)
        errors: list = [None] * len(items)
        for i, t in on_gpu.items():
            arrays[i] = t
        for i, (a, e) in zip(rest, results, strict=True):
            arrays[i], errors[i] = a, e
        return arrays, errors

    def _load_resized(
        self, item: Any, detector: Detector, full: bool = False
    ) -> tuple[np.ndarray | None, str | None]:
        """HWC uint8 pixels resized by PIL, or at full size when `full` (resized on device)."""
        cfg = detector.preprocess
        draft = (cfg.width, cfg.height) if self.draft else None
        img, err = read_image(item, max_pixels=self.max_pixels, draft_size=draft)
        if err is not None:
            return None, err
        try:
            return (np.array(img, dtype=np.uint8) if full else resize(img, cfg)), None
        except Exception as exc:  # one bad row must not cost the batch
            return None, f"cannot resize image: {exc}"

    def _fill(
        self, out: dict[str, list], start: int, arrays: list, errors: list, detector: Detector
    ) -> None:
        ok = [i for i, a in enumerate(arrays) if a is not None]
        for i, err in enumerate(errors):
            out[schema.ERROR][start + i] = err
        if not ok:
            return
        logits = self._forward_batches(
            lambda rows: self._logits_of(rows, detector), [arrays[i] for i in ok]
        )
        fake_prob = self.fake_probability(logits, detector)
        real_prob = np.float32(1.0) - fake_prob
        for j, i in enumerate(ok):
            row = start + i
            p = float(fake_prob[j])
            out[schema.FAKE_PROB][row] = p
            out[schema.REAL_PROB][row] = float(real_prob[j])
            out[schema.LABEL][row] = schema.label_for(p)
            if self.with_logits:
                out[schema.FAKE_LOGIT][row] = float(logits[j, detector.fake_index])
                out[schema.REAL_LOGIT][row] = float(logits[j, detector.real_index])

    def _logits_of(self, arrays: list, detector: Detector) -> np.ndarray:
        if self.resize_mode(detector) == "torch":
            pixel_values = resize_on_device(
                arrays, detector.preprocess, detector.device, detector.dtype
            )
            with torch.inference_mode():
                return detector.logits(pixel_values).cpu().numpy()
        return self.logits(pinned_batch(arrays, detector.device), detector)

    def logits(self, batch_uint8: np.ndarray, detector: Detector | None = None) -> np.ndarray:
        """float32 logits [N, num_labels] for a resized NHWC uint8 batch."""
        detector = detector or self.detector
        pixel_values = normalize(batch_uint8, detector.preprocess, detector.device, detector.dtype)
        with torch.inference_mode():
            return detector.logits(pixel_values).cpu().numpy()

    def fake_probability(self, logits: np.ndarray, detector: Detector | None = None) -> np.ndarray:
        """float32 fake_prob of each row of logits: the softmax mass of the synthetic classes
        (sigmoid of the detector's logit gap), calibrated if this scorer has a calibration."""
        detector = detector or self.detector
        return fake_probability(detector.logit_gap(logits), self.calibration).astype(np.float32)
