"""Provenance evidence read from image files, to sit beside the detector's score.

Three kinds, each reported with what it can and cannot prove (README, "Provenance evidence"):

- `c2pa`: C2PA content credentials (`c2pa-python`): a signed manifest, whether it validates,
  its claim generator, and whether an action or assertion declares AI generation (IPTC digital
  source type `trainedAlgorithmicMedia`, `compositeWithTrainedAlgorithmicMedia`, ...).
- `metadata`: PNG text chunks that generators write (Stable Diffusion web UIs' `parameters`,
  ComfyUI's `prompt` / `workflow`, InvokeAI, Fooocus, ...), EXIF / XMP software fields naming
  a generator, and the IPTC digital source type in XMP.
- `watermark` (opt-in): the DWT-DCT invisible watermark that the Stable Diffusion, SDXL and
  FLUX reference pipelines embed, as a bit-match rate against each known message.

`checker` composes them into the provenance columns of `curate.schema`. Everything but the
watermark reads the file's bytes only (no pixel decode). Nothing here raises on a bad file: a
row gets a reason instead. Absence of evidence proves nothing.
"""

from curate.provenance.c2pa import read_c2pa
from curate.provenance.checker import (
    NONE_FOUND,
    PROVENANCE_COLUMNS,
    WATERMARK_COLUMN,
    Provenance,
    ProvenanceChecker,
    checker_from_options,
    describe,
    evidence_counts,
    resolve_provenance,
)
from curate.provenance.evidence import (
    AI_SOURCE_TYPES,
    CAPTURE_SOURCE_TYPES,
    SYNTHETIC_SOURCE_TYPES,
    Evidence,
)
from curate.provenance.metadata import NOT_AN_IMAGE, png_text_chunks
from curate.provenance.watermark import (
    WATERMARK_MESSAGES,
    WatermarkCheck,
    check_watermark,
    decode_watermark,
    required_matches,
    watermark_block_bits,
)

__all__ = [
    "AI_SOURCE_TYPES",
    "CAPTURE_SOURCE_TYPES",
    "NONE_FOUND",
    "NOT_AN_IMAGE",
    "PROVENANCE_COLUMNS",
    "SYNTHETIC_SOURCE_TYPES",
    "WATERMARK_COLUMN",
    "WATERMARK_MESSAGES",
    "Evidence",
    "Provenance",
    "ProvenanceChecker",
    "WatermarkCheck",
    "check_watermark",
    "checker_from_options",
    "decode_watermark",
    "describe",
    "evidence_counts",
    "png_text_chunks",
    "read_c2pa",
    "required_matches",
    "resolve_provenance",
    "watermark_block_bits",
]
