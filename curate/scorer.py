"""DeepfakeScorer: the one batched callable every front end uses.

`datasets.map(scorer, batched=True)`, the FiftyOne operator, the CLI and Ray Data all call
it on a batch of images and get back the score columns. It holds settings only; the model
loads on first use in the process (and on the device) that calls it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Union

import numpy as np
import torch

from curate import schema
from curate.calibration import Calibration, fake_probability, resolve_calibration
from curate.detectors import Detector, default_model, load_detector, resolve_device, resolve_dtype
from curate.detectors.ensemble import (
    Ensemble,
    check_combine,
    member_revisions,
    member_synthetic_labels,
    model_list,
)
from curate.detectors.head import (
    LinearHead,
    attach_head,
    check_head_fits,
    head_digest,
)
from curate.pipeline.batching import HalvingForward, auto_batch_size
from curate.pipeline.compile import (
    COMPILE_AFTER_SECONDS,
    CompiledModel,
    check_compile,
    wants_compile,
)
from curate.pipeline.decode import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, read_image
from curate.pipeline.nvjpeg import decode_jpegs_on_device
from curate.pipeline.preprocess import (
    TORCH_RESAMPLE,
    normalize,
    pinned_batch,
    resize,
    resize_on_device,
)
from curate.pipeline.quantize import check_quantize, quantize_int8
from curate.provenance import ProvenanceChecker, describe, resolve_provenance

RESIZE_MODES = ("auto", "pil", "torch")
DECODE_MODES = ("cpu", "nvjpeg")
logger = logging.getLogger(__name__)
# What `load()` returns: one detector, or an ensemble of them.
Loaded = Union[Detector, Ensemble]  # noqa: UP007 (a runtime alias; py3.10 has no `type`)


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
            `prithivMLmods/open-deepfake-detection`), or a list of them: an ensemble, whose
            members each get their own preprocessing and whose scores combine by `combine`.
        revision: Hub revision (branch, tag or commit) to pin; for an ensemble, a list with
            one entry (or None) per member.
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
        max_file_bytes: files larger than this are not read (the row says so); None for no
            cap. Only regular files are read at all: FIFOs, devices and the like are rows
            with a reason.
        num_workers: decode threads (default: up to 8, one per CPU).
        calibration: a `Calibration`, a temperature, or the path of a saved calibration JSON.
        with_logits: also return `fake_logit` / `real_logit`.
        resize: "pil" resizes on CPU threads exactly as the checkpoint's processor does;
            "torch" resizes the full decode on the model's device (antialiased `interpolate`,
            within a tested bound of "pil", see the manual, "Fidelity"); "auto" (default) is
            "torch" on CUDA and "pil" elsewhere.
        decode: "cpu" (PIL on worker threads) or "nvjpeg": JPEGs decoded in batches on the
            GPU by torchvision, anything else (and any JPEG nvJPEG refuses) on CPU.
        compile: "auto" (default): on CPU, compile the model (inductor, weight freezing)
            once a run's eager forward passes have taken about what a first compile costs
            (a minute), so small runs never compile and long ones pay it once, early; on a
            GPU, no compile. True: compile from the first batch; False: never. Only batches
            of `batch_size` run compiled (so a run compiles once); see
            `curate.pipeline.compile`.
        quantize: None (default) or "int8": int8 weights and dynamically quantised int8
            activations in the encoder's linear layers, on the CPU's int8 units (needs
            `curate[int8]` and a CPU with VNNI or AMX; compiled from the first batch).
            The opt-in fastest mode: faster than bf16 where the CPU has VNNI or AMX, at a
            looser, documented fidelity bound (the manual, "Fidelity").
        provenance: also report provenance evidence (C2PA, generator metadata) read from
            the file bytes: True, "watermark" (adds the opt-in invisible-watermark check) or
            a `curate.provenance.ProvenanceChecker`; see the manual, "Provenance".
        combine: how an ensemble's members combine: "mean" of their probabilities
            (default), "max", or "logit_mean" (mean of their logit gaps, then sigmoid).
            A calibration applies to the combined score.
        head: folder of an adapted head (`curate adapt`) that replaces the model's own
            classifier; refused with a model it was not fitted on.
        synthetic_labels: the checkpoint's classes that mean synthetic (a list, or
            "a,b"); default: read from its labels by name. With an ensemble it applies to
            every member, or give a dict {model: classes} for the members that need it.

    Called on a batch dict it returns only the new columns: `fake_prob`, `real_prob`
    (float32, summing to 1), `deepfake_label` ("Fake"/"Real") and `deepfake_error` (null, or
    why the row's image could not be scored, in which case the other three are null); an
    ensemble adds `member_fake_probs` (each member's own, uncalibrated fake_prob, in the
    order of `model`). With `with_logits`, `fake_logit - real_logit` is the logit gap that
    fake_prob is the sigmoid of (before calibration): a two-class checkpoint's own logits;
    for more classes, or an ensemble, the gap itself as `fake_logit` and 0 as `real_logit`.
    """

    def __init__(
        self,
        model: str | Sequence[str] | None = None,
        revision: str | Sequence[str | None] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | str = 16,
        image_column: str = "image",
        *,
        draft: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_file_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
        num_workers: int | None = None,
        calibration: Calibration | float | str | None = None,
        with_logits: bool = False,
        resize: str = "auto",
        decode: str = "cpu",
        compile: bool | str = "auto",
        quantize: str | None = None,
        provenance: bool | str | ProvenanceChecker | None = False,
        combine: str = "mean",
        head: str | os.PathLike | None = None,
        synthetic_labels: Sequence[str] | str | Mapping[str, Sequence[str] | str] | None = None,
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
        members = model_list(model) or [default_model()]
        self.model = members[0] if len(members) == 1 else members
        self.revision = member_revisions(revision, members)
        self.combine = check_combine(combine)
        self.head = _head_folder(head, members, self.revision)
        self.synthetic_labels = member_synthetic_labels(synthetic_labels, members)
        self.device = _setting(device)
        self.dtype = _setting(dtype)
        self.batch_size = batch_size
        self.image_column = image_column
        self.draft = bool(draft)
        self.max_pixels = int(max_pixels)
        self.max_file_bytes = None if max_file_bytes is None else int(max_file_bytes)
        self.num_workers = num_workers
        self.calibration = resolve_calibration(calibration)
        self.with_logits = bool(with_logits)
        self.resize = resize
        self.decode = decode
        self.compile = check_compile(compile)
        self.quantize = check_quantize(quantize)
        if self.quantize and self.compile is False:
            raise ValueError("quantize='int8' only pays compiled: leave compile at 'auto' or True")
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
    @property
    def members(self) -> tuple[str, ...]:
        """The model ids this scorer combines (one, unless it is an ensemble)."""
        return (self.model,) if isinstance(self.model, str) else tuple(self.model)

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def load(self, rank: int | None = None) -> Loaded:
        """Load the model now (it otherwise loads on the first batch). `rank` picks the GPU.
        Returns its `Detector`, or for an ensemble the `Ensemble` of its members'."""
        with self._lock:
            if self._detector is None:
                detector = self._load_detectors(rank)
                self._check_options(detector)
                fitted_for = self.calibration.model if self.calibration is not None else None
                if fitted_for and fitted_for != self.model:
                    logger.warning(
                        "calibration was fitted for %r but the scorer uses %r: its "
                        "probabilities may be miscalibrated",
                        fitted_for,
                        self.model,
                    )
                for member, name in zip(_members(detector), self.members, strict=True):
                    self._compile(member, name)
                self._forward_batches = HalvingForward(detector.device)
                self._detector = detector
            return self._detector

    def _compile(self, detector: Detector, name: str) -> None:
        if self.quantize == "int8":
            size = (detector.preprocess.height, detector.preprocess.width)
            detector.model = quantize_int8(detector.model, detector.device, detector.dtype, size)
        if self.quantize or wants_compile(self.compile, detector.device):
            # "auto" waits until the run has spent about a compile's cost (pipeline/compile);
            # int8 only pays compiled, so it compiles at once.
            eager_first = self.compile == "auto" and not self.quantize
            detector.model = CompiledModel(
                detector.model,
                detector.device,
                self.chunk_size(detector),
                after_seconds=COMPILE_AFTER_SECONDS if eager_first else 0.0,
                name=name,
            )

    def _load_detectors(self, rank: int | None) -> Loaded:
        revisions = self.revision if self.is_ensemble else [self.revision]
        revisions = revisions or [None] * len(self.members)
        loaded = []
        for model, revision in zip(self.members, revisions, strict=True):
            detector = load_detector(
                model,
                revision,
                self.device,
                self.dtype,
                rank=rank,
                synthetic_labels=(
                    self.synthetic_labels.get(model)
                    if isinstance(self.synthetic_labels, dict)
                    else self.synthetic_labels
                ),
            )
            if self.head is not None:
                head = LinearHead.load(self.head)
                check_head_fits(head, model, revision)
                detector = attach_head(detector, head)
            loaded.append(detector)
        if not self.is_ensemble:
            return loaded[0]
        return Ensemble(tuple(loaded), self.members, self.combine)

    def _check_options(self, detector: Loaded) -> None:
        if self.decode == "nvjpeg" and detector.device.type != "cuda":
            raise ValueError(f"decode='nvjpeg' needs a CUDA device, not {detector.device}")
        for member in _members(detector):
            resample = member.preprocess.resample
            if self.resize == "torch" and resample not in TORCH_RESAMPLE:
                raise ValueError(
                    f"resize='torch' cannot reproduce the checkpoint's resample={resample}; "
                    "use resize='pil'"
                )
            if self.decode == "nvjpeg" and self._member_resize(member) != "torch":
                raise ValueError(
                    f"decode='nvjpeg' leaves images on the GPU, but the checkpoint's "
                    f"resample={resample} has no GPU resize; use decode='cpu'"
                )

    def resize_mode(self, detector: Loaded | None = None) -> str:
        """ "pil" or "torch": what `resize` means for the loaded model and its device (for
        an ensemble whose members differ, "mixed": each member is resized its own way)."""
        detector = detector or self.detector
        modes = {self._member_resize(m) for m in _members(detector)}
        return modes.pop() if len(modes) == 1 else "mixed"

    def _member_resize(self, detector: Detector) -> str:
        if self.resize != "auto":
            return self.resize
        gpu = detector.device.type == "cuda" or self.decode == "nvjpeg"
        return "torch" if gpu and detector.preprocess.resample in TORCH_RESAMPLE else "pil"

    def chunk_size(self, detector: Loaded | None = None) -> int:
        """Images decoded and sent to the model together (`batch_size`, resolved if "auto")."""
        if self.batch_size != "auto":
            return self.batch_size
        if self._auto_chunk is None:
            # Sized once: later, the caching allocator's own blocks would read as used.
            self._auto_chunk = auto_batch_size(detector or self.detector)
        return self._auto_chunk

    @property
    def detector(self) -> Loaded:
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
        members = (schema.MEMBER_PROBS,) if self.is_ensemble else ()
        return schema.SCORE_COLUMNS + logits + members + extra

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
            "max_file_bytes": self.max_file_bytes,
            "device_type": device,
        }
        if self.is_ensemble:
            meta["members"] = list(self.members)
            meta["combine"] = self.combine
        if self.head is not None:
            meta["head"] = self.head
            meta["head_sha256"] = head_digest(self.head)
        if self.synthetic_labels is not None:
            meta["synthetic_labels"] = self.synthetic_labels
        if self.quantize is not None:  # int8 moves the scores: a file says it was used
            meta["quantize"] = self.quantize
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

    def _prepare(self, items: list[Any], detector: Loaded) -> tuple[list, list]:
        """Decode each image once and prepare it for every member: ([per member: one array
        per row, None where it failed], [per row: None or why it failed])."""
        members = _members(detector)
        on_gpu: dict[int, torch.Tensor] = {}
        if self.decode == "nvjpeg":
            on_gpu = decode_jpegs_on_device(items, detector.device, self.max_pixels)
        rest = [i for i in range(len(items)) if i not in on_gpu]
        results = self._executor().map(lambda i: self._load_resized(items[i], members), rest)
        arrays: list[list] = [[None] * len(items) for _ in members]
        errors: list = [None] * len(items)
        for i, t in on_gpu.items():  # every member resizes on the device (_check_options)
            for per_member in arrays:
                per_member[i] = t
        for i, (prepared, err) in zip(rest, results, strict=True):
            errors[i] = err
            for per_member, a in zip(arrays, prepared or [None] * len(members), strict=True):
                per_member[i] = a
        return arrays, errors

    def _load_resized(
        self, item: Any, members: Sequence[Detector]
    ) -> tuple[list[np.ndarray] | None, str | None]:
        """One image decoded once, then for each member HWC uint8 pixels resized (and
        cropped) by PIL as its processor does, or at full size for a member that resizes on
        its device."""
        draft = None
        if self.draft:  # no member may get a smaller decode than its resize needs
            sizes = [m.preprocess.draft_size for m in members]
            draft = (max(w for w, _ in sizes), max(h for _, h in sizes))
        img, err = read_image(
            item,
            max_pixels=self.max_pixels,
            max_file_bytes=self.max_file_bytes,
            draft_size=draft,
        )
        if err is not None:
            return None, err
        out, full = [], None
        try:
            for member in members:
                if self._member_resize(member) == "torch":
                    full = np.array(img, dtype=np.uint8) if full is None else full
                    out.append(full)
                else:
                    out.append(resize(img, member.preprocess))
        except Exception as exc:  # one bad row must not cost the batch
            return None, f"cannot resize image: {exc}"
        return out, None

    def _fill(
        self, out: dict[str, list], start: int, arrays: list, errors: list, detector: Loaded
    ) -> None:
        for i, err in enumerate(errors):
            out[schema.ERROR][start + i] = err
        ok = [i for i, err in enumerate(errors) if err is None]
        if not ok:
            return
        members = _members(detector)
        member_logits = [
            self._forward_batches(
                lambda rows, m=member: self._logits_of(rows, m), [per_member[i] for i in ok]
            )
            for member, per_member in zip(members, arrays, strict=True)
        ]
        gaps = [m.logit_gap(lg) for m, lg in zip(members, member_logits, strict=True)]
        gap = detector.combined_gap(gaps) if isinstance(detector, Ensemble) else gaps[0]
        fake_prob = fake_probability(gap, self.calibration).astype(np.float32)
        real_prob = np.float32(1.0) - fake_prob
        own_logits = len(members) == 1 and member_logits[0].shape[1] == 2
        # Each member's own fake_prob, uncalibrated: the calibration is the ensemble's.
        member_probs = [fake_probability(g).astype(np.float32) for g in gaps]
        for j, i in enumerate(ok):
            row = start + i
            p = float(fake_prob[j])
            out[schema.FAKE_PROB][row] = p
            out[schema.REAL_PROB][row] = float(real_prob[j])
            out[schema.LABEL][row] = schema.label_for(p)
            if self.with_logits and own_logits:
                out[schema.FAKE_LOGIT][row] = float(member_logits[0][j, members[0].fake_index])
                out[schema.REAL_LOGIT][row] = float(member_logits[0][j, members[0].real_index])
            elif self.with_logits:
                out[schema.FAKE_LOGIT][row] = float(gap[j])
                out[schema.REAL_LOGIT][row] = 0.0
            if self.is_ensemble:
                out[schema.MEMBER_PROBS][row] = [float(mp[j]) for mp in member_probs]

    def _logits_of(self, arrays: list, detector: Detector) -> np.ndarray:
        if self._member_resize(detector) == "torch":
            pixel_values = resize_on_device(
                arrays, detector.preprocess, detector.device, detector.dtype
            )
            with torch.inference_mode():
                return detector.logits(pixel_values).cpu().numpy()
        return self.logits(pinned_batch(arrays, detector.device), detector)

    def logits(self, batch_uint8: np.ndarray, detector: Detector | None = None) -> np.ndarray:
        """float32 logits [N, num_labels] for a resized NHWC uint8 batch (of one detector:
        an ensemble's member)."""
        detector = detector or self.detector
        if isinstance(detector, Ensemble):
            raise TypeError("an ensemble has no logits of its own: pass one of its members")
        pixel_values = normalize(batch_uint8, detector.preprocess, detector.device, detector.dtype)
        with torch.inference_mode():
            return detector.logits(pixel_values).cpu().numpy()

    def fake_probability(self, logits: np.ndarray, detector: Detector | None = None) -> np.ndarray:
        """float32 fake_prob of each row of one detector's logits: the softmax mass of the
        synthetic classes (sigmoid of the detector's logit gap), calibrated if this scorer has
        a calibration."""
        detector = detector or self.detector
        if isinstance(detector, Ensemble):
            raise TypeError("an ensemble has no logits of its own: pass one of its members")
        return fake_probability(detector.logit_gap(logits), self.calibration).astype(np.float32)


def _members(detector: Loaded) -> tuple[Detector, ...]:
    return detector.members if isinstance(detector, Ensemble) else (detector,)


def _head_folder(
    head: str | os.PathLike | None, members: list[str], revision: str | list | None
) -> str | None:
    """`head` as an absolute folder path, checked against the model before anything loads."""
    if head is None:
        return None
    folder = os.path.abspath(os.fspath(head))
    if len(members) > 1:
        raise ValueError(
            "head= adapts one model, not an ensemble: adapt each member's score with "
            "`curate adapt` and score with a single model and its head"
        )
    if not os.path.isdir(folder):
        raise ValueError(f"head {os.fspath(head)!r} is not a folder; make one with `curate adapt`")
    check_head_fits(LinearHead.load(folder), members[0], revision)
    return folder
