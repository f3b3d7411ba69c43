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

from curate.calibration import Calibration, resolve_calibration
from curate.images import DEFAULT_MAX_PIXELS, read_image
from curate.model import Detector, default_model, load_detector
from curate.preprocess import (
    TORCH_RESAMPLE,
    decode_jpegs_on_device,
    normalize,
    pinned_batch,
    resize,
    resize_on_device,
)
from curate.provenance import ProvenanceChecker, resolve_provenance

FAKE, REAL = "Fake", "Real"
SCORE_COLUMNS = ("fake_prob", "real_prob", "deepfake_label", "deepfake_error")
LOGIT_COLUMNS = ("fake_logit", "real_logit")
RESIZE_MODES = ("auto", "pil", "torch")
DECODE_MODES = ("cpu", "nvjpeg")
# torch.cuda.OutOfMemoryError is an alias of it on recent torch; older ones only have that.
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
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
        dtype: "auto" (bf16 on GPU, fp32 on CPU), "float32", "bfloat16", "float16" or a
            `torch.dtype`.
        batch_size: images per forward pass; larger inputs are split into chunks of this size.
            "auto" picks one from free GPU memory (8 on CPU). Either way an out-of-memory
            error halves the forward batch (and keeps it halved) instead of failing the run.
        image_column: the column read when called on a batch dict.
        draft: decode JPEGs at reduced scale (faster, approximate; see README "Fidelity").
        max_pixels: images larger than this are refused as decompression bombs.
        num_workers: decode threads (default: up to 8, one per CPU).
        calibration: a `Calibration`, a temperature, or the path of a saved calibration JSON.
        with_logits: also return `fake_logit` / `real_logit`.
        resize: "pil" resizes on CPU threads exactly as the checkpoint's processor does;
            "torch" resizes the full decode on the model's device (antialiased `interpolate`,
            within a tested bound of "pil", see README "Fidelity"); "auto" (default) is
            "torch" on CUDA and "pil" elsewhere.
        decode: "cpu" (PIL on worker threads) or "nvjpeg": JPEGs decoded in batches on the
            GPU by torchvision, anything else (and any JPEG nvJPEG refuses) on CPU.
        compile: `torch.compile` the model once loaded (slow first batch, faster after; on
            CPU with inductor's weight freezing).
        provenance: also report provenance evidence (C2PA, generator metadata) read from
            the file bytes: True, "watermark" (adds the opt-in invisible-watermark check) or
            a `curate.provenance.ProvenanceChecker`; see README "Provenance evidence".

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
        # Largest forward batch known to fit; lowered on an out-of-memory error.
        self._max_forward: int | None = None
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
            self._auto_chunk = self._fit_batch(detector or self.detector)
        return self._auto_chunk

    @staticmethod
    def _fit_batch(detector: Detector) -> int:
        if detector.device.type != "cuda":
            return 8
        free, _ = torch.cuda.mem_get_info(detector.device)
        cfg = detector.model.config
        vision = getattr(cfg, "vision_config", cfg)
        tokens = (detector.preprocess.height // vision.patch_size) * (
            detector.preprocess.width // vision.patch_size
        )
        # Peak activations of one image (widest layer, a few live copies) plus its pixels in
        # float32 and a full-size decode; half the free memory, so the estimate may be off 2x.
        width = max(vision.intermediate_size, 3 * vision.hidden_size)
        per_image = 4 * tokens * width * detector.dtype.itemsize + 16 * 2**20
        fits = max(1, int(0.5 * free // per_image))
        return min(512, 1 << (fits.bit_length() - 1))

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
        return SCORE_COLUMNS + (LOGIT_COLUMNS if self.with_logits else ()) + extra

    @property
    def features(self):
        """`datasets.Features` of the columns this scorer adds."""
        from datasets import Features, Value

        types = {
            "fake_prob": "float32",
            "real_prob": "float32",
            "deepfake_label": "string",
            "deepfake_error": "string",
            "fake_logit": "float32",
            "real_logit": "float32",
        }
        if self.provenance is not None:
            types.update(self.provenance.dtypes)
        return Features({c: Value(types[c]) for c in self.columns})

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
        out: dict[str, list] = {c: [None] * len(images) for c in self.columns}
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
            out.update(self.provenance.check_many(images, self._executor()))
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
            out["deepfake_error"][start + i] = err
        if not ok:
            return
        logits = self._forward([arrays[i] for i in ok], detector)
        fake_logit = logits[:, detector.fake_index]
        real_logit = logits[:, detector.real_index]
        fake_prob = self.fake_probability(fake_logit, real_logit)
        for j, i in enumerate(ok):
            row = start + i
            p = float(fake_prob[j])
            out["fake_prob"][row] = p
            out["real_prob"][row] = float(np.float32(1.0) - fake_prob[j])
            out["deepfake_label"][row] = FAKE if p > 0.5 else REAL
            if self.with_logits:
                out["fake_logit"][row] = float(fake_logit[j])
                out["real_logit"][row] = float(real_logit[j])

    def _forward(self, arrays: list, detector: Detector) -> np.ndarray:
        """Logits for prepared rows, in forward batches that fit: an out-of-memory error halves
        the batch for this and every later call, down to one image (which then raises)."""
        step = min(len(arrays), self._max_forward or len(arrays))
        outs, i = [], 0
        while i < len(arrays):
            try:
                outs.append(self._logits_of(arrays[i : i + step], detector))
                i += step
            except OutOfMemoryError:
                if step == 1:
                    raise
                step = (step + 1) // 2
                self._max_forward = step
                if detector.device.type == "cuda":
                    torch.cuda.empty_cache()
                logger.warning("out of memory: forward batch halved to %d images", step)
        return np.concatenate(outs)

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

    def fake_probability(self, fake_logit: np.ndarray, real_logit: np.ndarray) -> np.ndarray:
        """Softmax over the Fake/Real pair (= sigmoid of the logit gap), calibrated if asked."""
        gap = fake_logit.astype(np.float64) - real_logit.astype(np.float64)
        if self.calibration is not None:
            gap = self.calibration.slope * gap + self.calibration.intercept
        return (1.0 / (1.0 + np.exp(-gap))).astype(np.float32)
