"""Robustness: how the detector's ranking and a threshold's decisions hold up when the labelled
images are re-compressed (JPEG) or downscaled, as they are by CDNs and thumbnailers."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from curate import schema
from curate.calibration import Calibration
from curate.evaluation.base import one_class_reason
from curate.evaluation.thresholds import threshold_summary

if TYPE_CHECKING:
    from curate.scorer import DeepfakeScorer
    from curate.sources import Source

DEFAULT_PERTURBATIONS = ("jpeg:90", "jpeg:75", "jpeg:50", "downscale:0.5", "downscale:0.25")


def perturb(image: Any, spec: str) -> bytes:
    """Encode an RGB PIL image as `spec` changes it: `jpeg:Q` re-compresses at quality Q,
    `downscale:F` shrinks both sides by F (Lanczos) and stores it losslessly (PNG)."""
    kind, _, arg = spec.partition(":")
    buf = io.BytesIO()
    if kind == "jpeg":
        q = _number(int, arg or "75", spec, "JPEG quality")
        if not 1 <= q <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {q}")
        image.save(buf, format="JPEG", quality=q)
    elif kind == "downscale":
        f = _number(float, arg or "0.5", spec, "downscale factor")
        if not 0 < f <= 1:
            raise ValueError(f"downscale factor must be in (0, 1], got {f}")
        from PIL import Image

        size = (max(1, round(image.width * f)), max(1, round(image.height * f)))
        image.resize(size, Image.Resampling.LANCZOS).save(buf, format="PNG")
    else:
        raise ValueError(f"unknown perturbation {spec!r}: use jpeg:QUALITY or downscale:FACTOR")
    return buf.getvalue()


def _number(kind: type, text: str, spec: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"perturbation {spec!r}: the {what} must be a number") from None


def check_perturbations(specs: Sequence[str]) -> None:
    """Raise ValueError for a spec `perturb` would refuse, before any image is scored."""
    from PIL import Image

    probe = Image.new("RGB", (8, 8))
    for spec in specs:
        perturb(probe, spec)


def robustness_probe(
    scorer: DeepfakeScorer,
    images: Sequence[Any],
    y: Any,
    threshold: float,
    *,
    perturbations: Sequence[str] = DEFAULT_PERTURBATIONS,
    chunk_size: int = 64,
    calibration: Calibration | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score the labelled images with `scorer` as they are and after each perturbation; report
    how ROC-AUC and the threshold's precision, recall and FPR move against the unperturbed
    images. With `calibration` (and a scorer built `with_logits=True`) the threshold applies
    to the calibrated probabilities of the logit gaps. Every image is decoded once per chunk
    with `curate.pipeline.decode.read_image`; `progress(k)` is called after each chunk of `k`
    images."""
    from curate.pipeline.decode import read_image

    check_perturbations(perturbations)
    y = np.asarray(y).astype(np.int8)
    if calibration is not None and not getattr(scorer, "with_logits", False):
        raise ValueError("a calibrated probe needs a scorer built with with_logits=True")

    def probs(items: Sequence[Any]) -> np.ndarray:
        out = scorer.score_images(items)
        if calibration is None:
            return _floats(out[schema.FAKE_PROB])
        fake, real = (_floats(out[c]) for c in schema.LOGIT_COLUMNS)
        return calibration.apply(fake - real)  # an unscored image stays NaN

    base = np.full(len(images), np.nan)
    scores = {s: np.full(len(images), np.nan) for s in perturbations}
    for start in range(0, len(images), chunk_size):
        chunk = images[start : start + chunk_size]
        base[start : start + len(chunk)] = probs(chunk)
        decoded = [read_image(x)[0] for x in chunk]
        for spec in perturbations:
            encoded = [None if im is None else perturb(im, spec) for im in decoded]
            scores[spec][start : start + len(chunk)] = probs(encoded)
        if progress is not None:
            progress(len(chunk))
    rows = [_probe_row("original", y, base, threshold, None)]
    for spec in perturbations:
        rows.append(_probe_row(spec, y, scores[spec], threshold, rows[0]))
    return rows


def _floats(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _probe_row(
    name: str, y: np.ndarray, p: np.ndarray, threshold: float, base: dict | None
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(p)
    yy, pp = y[ok], p[ok]
    row: dict[str, Any] = {"perturbation": name, "n": int(ok.sum())}
    two = len(yy) and not one_class_reason(yy)
    row["roc_auc"] = float(roc_auc_score(yy, pp)) if two else None
    s = threshold_summary(yy, pp, threshold) if len(yy) else None
    row["precision"] = s.precision if s else None
    row["recall"] = s.recall if s else None
    row["fpr"] = s.fpr if s else None
    row["mean_fake_prob"] = float(pp.mean()) if len(pp) else None
    if base is not None:
        for k in ("roc_auc", "precision", "recall", "fpr"):
            a, b = row[k], base[k]
            row[f"delta_{k}"] = None if a is None or b is None else a - b
    return row


def probe_indices(y: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """A stratified random subset of at most `limit` rows (sorted), for the robustness probe."""
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    strat = y if min(y.sum(), len(y) - y.sum()) >= 2 and limit >= 2 else None
    keep, _ = train_test_split(idx, train_size=limit, stratify=strat, random_state=seed)
    return np.sort(keep)


def gather_images(source: Source, rows: Sequence[int], batch_size: int = 64) -> list[Any]:
    """The image values of the given source rows (sorted), reading the source once more."""
    wanted = {int(r): i for i, r in enumerate(rows)}
    out: list[Any] = [None] * len(rows)
    offset = 0
    last = max(wanted) if wanted else -1
    for batch in source.batches(batch_size):
        images = batch[source.image_column]
        for j, im in enumerate(images):
            if offset + j in wanted:
                out[wanted[offset + j]] = im
        offset += len(images)
        if offset > last:
            break
    return out
