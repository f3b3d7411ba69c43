"""The provenance checker: runs the C2PA, metadata and (opt-in) watermark readers on one image
and turns what they found into the provenance columns of `curate.schema`.

Nothing here raises on a bad file: a row gets a reason instead. Absence of evidence proves
nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from curate import schema
from curate.pipeline.decode import DEFAULT_MAX_PIXELS, image_bytes
from curate.provenance.c2pa import load_trust_anchors, read_c2pa
from curate.provenance.evidence import Evidence
from curate.provenance.metadata import NOT_AN_IMAGE, metadata_evidence, scan_file
from curate.provenance.watermark import check_watermark

__all__ = [
    "NONE_FOUND",
    "PROVENANCE_COLUMNS",
    "WATERMARK_COLUMN",
    "Evidence",
    "Provenance",
    "ProvenanceChecker",
    "checker_from_options",
    "describe",
    "evidence_counts",
    "resolve_provenance",
]

# The contract's names, under the names this package has always exported them by.
PROVENANCE_COLUMNS = schema.PROVENANCE_COLUMNS
WATERMARK_COLUMN = schema.PROVENANCE_WATERMARK
NONE_FOUND = "none found"


@dataclass
class Provenance:
    """Provenance of one image: the evidence found, and the row it becomes."""

    evidence: list[Evidence] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    watermark_match: float | None = None
    watermark_results: list[dict[str, Any]] | None = None

    @property
    def synthetic(self) -> bool | None:
        """True if any evidence says synthetic; False if evidence only says captured; else None."""
        says = {e.says for e in self.evidence}
        if "synthetic" in says:
            return True
        if "captured" in says:
            return False
        return None

    @property
    def strong(self) -> bool:
        return any(e.strong and e.says == "synthetic" for e in self.evidence)

    @property
    def summary(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        parts = [e.summary for e in self.evidence] or [NONE_FOUND]
        return "; ".join(parts + self.notes)

    def detail(self) -> dict[str, Any]:
        return {
            "evidence": [
                {"kind": e.kind, "says": e.says, "strong": e.strong, **e.detail}
                for e in self.evidence
            ],
            "notes": self.notes,
            "error": self.error,
            **({"watermark": self.watermark_results} if self.watermark_results else {}),
        }

    def row(self, watermark: bool = False) -> dict[str, Any]:
        """This image's provenance columns (and the watermark column when `watermark`)."""
        out = {
            schema.PROVENANCE: self.summary,
            schema.PROVENANCE_SYNTHETIC: self.synthetic,
            schema.PROVENANCE_STRONG: self.strong,
            schema.PROVENANCE_DETAIL: json.dumps(self.detail(), ensure_ascii=False, default=str),
        }
        if watermark:
            out[schema.PROVENANCE_WATERMARK] = self.watermark_match
        return out


@dataclass(frozen=True)
class ProvenanceChecker:
    """Settings for provenance checks; picklable, so it travels with the scorer to workers.

    Args:
        watermark: also decode each image and look for the SD / SDXL / FLUX invisible watermark
            (costs a full decode; off by default).
        trust_anchors: PEM text or a PEM file of C2PA trust anchors (for example the C2PA trust
            list); manifests signed under them validate as "Trusted" instead of "Valid".
        watermark_false_alarm: the chance that an unmarked image with random watermark bits is
            reported as marked (split over every message and channel order tried); it sets the
            bit-error tolerance of each message.
        max_pixels: images larger than this are not decoded for the watermark check.
    """

    watermark: bool = False
    trust_anchors: str | None = None
    watermark_false_alarm: float = 1e-6
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "watermark", bool(self.watermark))
        object.__setattr__(self, "trust_anchors", load_trust_anchors(self.trust_anchors))
        if self.watermark:
            try:
                import cv2  # noqa: F401
            except ImportError:
                raise ValueError(
                    "the watermark check needs OpenCV: pip install 'curate[provenance]' "
                    "(opencv-python-headless)"
                ) from None
        fa = self.watermark_false_alarm
        if isinstance(fa, bool) or not isinstance(fa, (int, float)) or not 0.0 < fa < 1.0:
            raise ValueError(f"watermark_false_alarm must be a probability in (0, 1), got {fa!r}")

    @property
    def columns(self) -> tuple[str, ...]:
        return PROVENANCE_COLUMNS + ((WATERMARK_COLUMN,) if self.watermark else ())

    @property
    def dtypes(self) -> dict[str, str]:
        """Arrow / `datasets` value types of `columns`, from the column contract."""
        return {c: schema.COLUMN_TYPES[c] for c in self.columns}

    def check(self, source: Any) -> Provenance:
        """Provenance of one image (any form `curate.pipeline.decode` accepts); never raises."""
        try:
            return self._check(source)
        except Exception as exc:  # one odd file must cost its row, not the run
            return Provenance(error=f"unexpected {type(exc).__name__}: {exc}")

    def _check(self, source: Any) -> Provenance:
        if source is None:
            return Provenance(error="no image (null value)")
        result = Provenance()
        image = None
        try:
            data = image_bytes(source)
        except FileNotFoundError:
            return Provenance(error=f"file not found: {_name(source)}")
        except OSError as exc:
            return Provenance(error=f"cannot read {_name(source)}: {exc.strerror or exc}")
        if data is None and isinstance(source, Image.Image):
            path = getattr(source, "filename", None)
            if path and os.path.isfile(path):
                with open(path, "rb") as f:
                    data = f.read()
            else:
                image = source
                result.notes.append("decoded image without its file: C2PA not checked")
        elif data is None:
            result.notes.append(f"no file bytes ({type(source).__name__}): metadata not checked")
        if data is not None and len(data) == 0:
            return Provenance(error="empty file (0 bytes)")
        scan = scan_file(data) if data is not None else None
        if scan is not None:
            c2pa_evidence = read_c2pa(data, self.trust_anchors, present=scan.has_c2pa)
            if c2pa_evidence is not None:
                result.evidence.append(c2pa_evidence)
        if scan is not None or image is not None:
            result.evidence += metadata_evidence(scan, image)
            notes = scan.notes if scan is not None else []
            if NOT_AN_IMAGE in notes and not result.evidence:
                return Provenance(error=NOT_AN_IMAGE)
            result.notes += notes
        if self.watermark:
            check = check_watermark(source, self.watermark_false_alarm, self.max_pixels)
            result.watermark_match = check.match_rate
            result.watermark_results = check.results
            if check.evidence is not None:
                result.evidence.append(check.evidence)
            if check.note is not None:
                result.notes.append(check.note)
        return result

    def check_many(
        self, images: Sequence[Any], executor: Executor | None = None
    ) -> dict[str, list]:
        """The provenance columns for a sequence of images, in input order; each column keeps
        its contract type in Arrow even when every value is null."""
        images = list(images)
        mapper = executor.map if executor is not None else map
        results = list(mapper(self.check, images))
        out: dict[str, list] = {c: schema.TypedColumn(c) for c in self.columns}
        for r in results:
            for k, v in r.row(self.watermark).items():
                out[k].append(v)
        return out

    def __call__(
        self, batch: dict[str, Sequence[Any]], image_column: str = schema.IMAGE
    ) -> dict[str, list]:
        """`datasets.map(checker, batched=True)` without scoring: provenance columns only."""
        return self.check_many(batch[image_column])


def _name(source: Any) -> str:
    if isinstance(source, dict):
        return repr(source.get("path") or "<bytes>")
    return (
        repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    )


def resolve_provenance(value: bool | ProvenanceChecker | str | None) -> ProvenanceChecker | None:
    """`DeepfakeScorer(provenance=...)`: False/None off, True metadata + C2PA,
    "watermark" also the watermark check, or a `ProvenanceChecker`."""
    if value is None or value is False:
        return None
    if value is True:
        return ProvenanceChecker()
    if value == "watermark":
        return ProvenanceChecker(watermark=True)
    if isinstance(value, ProvenanceChecker):
        return value
    raise ValueError(
        f"provenance must be True, False, 'watermark' or a ProvenanceChecker; got {value!r}"
    )


def checker_from_options(
    provenance: bool = False, watermark: bool = False, trust_anchors: Any = None
) -> ProvenanceChecker | None:
    """The checker that command-line flags ask for (`--watermark` / `--trust-anchors` imply
    `--provenance`), or None."""
    if not (provenance or watermark or trust_anchors):
        return None
    return ProvenanceChecker(watermark=watermark, trust_anchors=trust_anchors)


def describe(checker: ProvenanceChecker | None) -> dict[str, Any] | None:
    """The checker's settings for a file's metadata (the trust anchors as a digest)."""
    if checker is None:
        return None
    anchors = checker.trust_anchors
    return {
        "watermark": checker.watermark,
        "watermark_false_alarm": checker.watermark_false_alarm,
        "trust_anchors_sha256": hashlib.sha256(anchors.encode()).hexdigest() if anchors else None,
    }


def evidence_counts(synthetic: Sequence[Any], strong: Sequence[Any]) -> dict[str, int]:
    """Rows whose evidence says synthetic (and strongly), says captured, or has none."""
    says = list(synthetic)
    return {
        "synthetic": sum(s is True for s in says),
        "strong": sum(bool(s) for s in strong),
        "captured": sum(s is False for s in says),
        "none": sum(s is None for s in says),
    }
