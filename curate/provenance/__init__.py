"""Provenance evidence read from image files, to sit beside the detector's score.

Three kinds, each reported with what it can and cannot prove (README, "Provenance evidence"):

- C2PA content credentials (`c2pa-python`): a signed manifest, whether it validates, its claim
  generator, and whether an action or assertion declares AI generation (IPTC digital source
  type `trainedAlgorithmicMedia`, `compositeWithTrainedAlgorithmicMedia`, ...).
- Generator metadata: PNG text chunks that generators write (Stable Diffusion web UIs'
  `parameters`, ComfyUI's `prompt` / `workflow`, InvokeAI, Fooocus, ...), EXIF / XMP software
  fields naming a generator, and the IPTC digital source type in XMP.
- Opt-in: the DWT-DCT invisible watermark that the Stable Diffusion, SDXL and FLUX reference
  pipelines embed (`invisible-watermark`'s `dwtDct` with their published messages), as a
  bit-match rate against each known message.

Everything but the watermark reads the file's bytes only (no pixel decode). Nothing here
raises on a bad file: a row gets a reason instead. Absence of evidence proves nothing.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import threading
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from curate.pipeline.decode import DEFAULT_MAX_PIXELS, image_bytes, read_image

PROVENANCE_COLUMNS = (
    "provenance",
    "provenance_synthetic",
    "provenance_strong",
    "provenance_detail",
)
WATERMARK_COLUMN = "provenance_watermark"
NONE_FOUND = "none found"
NOT_AN_IMAGE = "not a recognised image file"

# IPTC digital source types (http://cv.iptc.org/newscodes/digitalsourcetype/), by what they say.
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
SYNTHETIC_SOURCE_TYPES = AI_SOURCE_TYPES | {"algorithmicMedia", "compositeSynthetic"}
CAPTURE_SOURCE_TYPES = frozenset(
    {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "compositeCapture"}
)

# Messages embedded with `invisible-watermark` (method "dwtDct", default scales) by reference
# pipelines. SD 1.x: CompVis scripts/txt2img.py; SD 2.x: Stability-AI/stablediffusion scripts;
# SDXL: Stability-AI/generative-models and diffusers' StableDiffusionXLWatermarker; FLUX: the
# black-forest-labs reference code. `bin(x)[2:]` drops leading zeros, so FLUX's 48-bit
# constant embeds 46 bits.
WATERMARK_MESSAGES: dict[str, np.ndarray] = {
    "Stable Diffusion 1.x": np.unpackbits(np.frombuffer(b"StableDiffusionV1", np.uint8)),
    "Stable Diffusion 2.x": np.unpackbits(np.frombuffer(b"SDV2", np.uint8)),
    "SDXL": np.array([int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:]]),
    "FLUX": np.array([int(b) for b in bin(0b001010101111111010000111100111001111010100101110)[2:]]),
}
# The reference scripts hand the encoder BGR arrays; diffusers hands it RGB ones. Both are tried.
_CHANNEL_ORDERS = ("bgr", "rgb")
_WM_SCALE, _WM_BLOCK = 36, 4  # EmbedMaxDct defaults: U-channel scale 36, 4x4 blocks
_WM_MIN_SIDE = 256  # the encoder refuses images under 256x256 pixels
_HAAR = 0.7071067811865476  # PyWavelets' Haar decomposition filter taps (1 / sqrt(2))

_DETAIL_TEXT_LIMIT = 2000  # characters kept per raw metadata value (ComfyUI graphs run to 100 KB)
_ZTXT_LIMIT = 1 << 20  # decompressed bytes read from one compressed PNG text chunk

# PNG text keywords that generators write, with a check that the content is what they write.
_A1111 = re.compile(r"\bSteps: \d+|\bSampler: |\bCFG scale: |sui_image_params")
_PNG_GENERATOR_KEYS: dict[str, tuple[str, Any]] = {
    "parameters": ("Stable Diffusion web UI parameters", lambda t: bool(_A1111.search(t))),
    "prompt": ("ComfyUI prompt graph", lambda t: '"class_type"' in t),
    "workflow": ("ComfyUI workflow", lambda t: '"nodes"' in t),
    "invokeai_metadata": ("InvokeAI metadata", bool),
    "invokeai_graph": ("InvokeAI graph", bool),
    "sd-metadata": ("InvokeAI metadata", bool),
    "dream": ("InvokeAI (legacy) dream command", bool),
    "fooocus_scheme": ("Fooocus metadata", bool),
    "aigc": ("AIGC implicit label (GB 45438-2025)", bool),
}
# Fields that name the software that made a file, and generator names to look for in them.
_GENERATOR_NAMES = re.compile(
    r"stable[ -]?diffusion|\bsdxl\b|novelai|midjourney|\bdall.{0,2}e\b|adobe firefly|"
    r"google imagen|\bimagen ?\d|google gemini|ideogram|leonardo\.?ai|\bflux(\.\d)?\b|"
    r"comfyui|invokeai|fooocus|"
    r"automatic1111|stable-diffusion-webui|diffusionbee|draw things|craiyon|"
    r"bing image creator|microsoft designer|gpt-4o|chatgpt|playground ?ai|kandinsky|"
    r"dreamstudio|nightcafe|runway ?ml|recraft|seedream|hunyuan|made with google ai|"
    r"imagined with ai|\bai[- ]generated\b",
    re.IGNORECASE,
)
_PNG_SOFTWARE_KEYS = ("software", "source", "generator", "creator", "author", "comment")
_EXIF_SOFTWARE_TAGS = {0x0131: "Software", 0x013B: "Artist"}
_EXIF_TEXT_TAGS = {0x010E: "ImageDescription"}  # checked for generation parameters only
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286

_XMP = re.compile(rb"<x:xmpmeta.*?</x:xmpmeta>|<x:xapmeta.*?</x:xapmeta>", re.DOTALL)
_XMP_SOURCE_TYPE = re.compile(
    r'DigitalSourceType\s*=\s*"([^"]*)"|DigitalSourceType[^>]*?rdf:resource\s*=\s*"([^"]*)"'
    r"|DigitalSourceType>\s*([^<\s][^<]*)<"
)
_XMP_SOFTWARE = re.compile(
    r'(CreatorTool|tiff:Software|photoshop:Credit|Iptc4xmpCore:Credit)\s*=\s*"([^"]*)"'
    r"|<(xmp:CreatorTool|tiff:Software|photoshop:Credit)>\s*(?:<rdf:Alt>\s*<rdf:li[^>]*>)?([^<]*)<"
)
_XMP_REMOTE_MANIFEST = re.compile(
    r'dcterms:provenance\s*=\s*"([^"]*)"|<dcterms:provenance>([^<]*)<'
)


def _source_type_name(value: str) -> str:
    """`http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia` -> its last part."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def _says(types: Iterable[str]) -> str | None:
    types = set(types)
    if types & SYNTHETIC_SOURCE_TYPES:
        return "synthetic"
    if types & CAPTURE_SOURCE_TYPES:
        return "captured"
    return None


def _clip(text: str) -> str:
    if len(text) <= _DETAIL_TEXT_LIMIT:
        return text
    return text[:_DETAIL_TEXT_LIMIT] + f"... [{len(text):,} characters in all]"


@dataclass
class Evidence:
    """One piece of evidence: where it came from, what it says, and how much it can be trusted.

    `says` is "synthetic", "captured" or None (present but neutral); `strong` is set only for
    evidence that is hard to produce by accident: a C2PA manifest that validates and declares
    AI generation, or a known watermark matched far beyond chance."""

    kind: str  # "c2pa", "metadata", "watermark"
    summary: str
    says: str | None = None
    strong: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


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
        out = {
            "provenance": self.summary,
            "provenance_synthetic": self.synthetic,
            "provenance_strong": self.strong,
            "provenance_detail": json.dumps(self.detail(), ensure_ascii=False, default=str),
        }
        if watermark:
            out[WATERMARK_COLUMN] = self.watermark_match
        return out


# -- C2PA ---------------------------------------------------------------------------------------
_c2pa_local = threading.local()


def _c2pa_context(trust_anchors: str | None):
    """A c2pa Context per thread: never fetches remote manifests or OCSP (scoring stays offline
    and deterministic); trusts `trust_anchors` (PEM) when given."""
    import c2pa

    key = trust_anchors or ""
    cache = getattr(_c2pa_local, "contexts", None)
    if cache is None or getattr(_c2pa_local, "pid", None) != os.getpid():
        cache = _c2pa_local.contexts = {}
        _c2pa_local.pid = os.getpid()
    if key not in cache:
        settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
        if trust_anchors:
            settings["trust"] = {"trust_anchors": trust_anchors}
        cache[key] = c2pa.Context.from_dict(settings)
    return cache[key]


def _walk(node: Any, found: dict[str, list]) -> None:
    """Collect digital source types and software agents anywhere in a manifest's assertions."""
    if isinstance(node, dict):
        for k, v in node.items():
            lk = k.lower()
            if lk.endswith("digitalsourcetype") and isinstance(v, str):
                found["source_types"].append(_source_type_name(v))
            elif lk == "softwareagent":
                name = v.get("name") if isinstance(v, dict) else v
                if isinstance(name, str):
                    version = v.get("version") if isinstance(v, dict) else None
                    found["software_agents"].append(f"{name} {version}" if version else name)
            else:
                _walk(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found)


def _claim_generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict) and info[0].get("name"):
        version = info[0].get("version")
        return f"{info[0]['name']} {version}" if version else str(info[0]["name"])
    gen = manifest.get("claim_generator")
    return str(gen) if gen else None


def read_c2pa(
    data: bytes, trust_anchors: str | None = None, present: bool | None = None
) -> Evidence | None:
    """C2PA evidence from file bytes, or None when the file carries no manifest store.

    `present`: whether the caller's own scan of the file found a manifest store (None: look
    for one in the whole file)."""
    # Every embedded manifest store is a JUMBF box labelled "c2pa": skip the reader without it.
    if present is None:
        present = b"c2pa" in data
    if not present:
        return None
    try:
        import c2pa
    except ImportError:
        return Evidence(
            "c2pa",
            "C2PA data present but not checked (install curate[provenance] for c2pa-python)",
        )
    try:
        with c2pa.Reader(io.BytesIO(data), context=_c2pa_context(trust_anchors)) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "not found" in str(exc).lower():
            return None
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Evidence("c2pa", f"C2PA data present but unreadable ({msg})", detail={"error": msg})
    except Exception as exc:  # a parser bug must cost one row's C2PA check, not the run
        msg = f"{type(exc).__name__}: {exc}"
        return Evidence("c2pa", f"C2PA data present but unreadable ({msg})", detail={"error": msg})
    return _c2pa_evidence(store)


def _c2pa_evidence(store: dict) -> Evidence:
    manifests = store.get("manifests") or {}
    active_label = store.get("active_manifest")
    active = manifests.get(active_label) or {}
    state = store.get("validation_state") or "Unknown"
    codes = [s.get("code") for s in store.get("validation_status") or [] if isinstance(s, dict)]
    per_manifest = {}
    all_types: list[str] = []
    for label, manifest in manifests.items():
        found: dict[str, list] = {"source_types": [], "software_agents": []}
        _walk(manifest.get("assertions") or [], found)
        all_types += found["source_types"]
        per_manifest[label] = {
            "active": label == active_label,
            "claim_generator": _claim_generator(manifest),
            "digital_source_types": sorted(set(found["source_types"])),
            "software_agents": sorted(set(found["software_agents"])),
            "signer": (manifest.get("signature_info") or {}).get("common_name"),
            "issuer": (manifest.get("signature_info") or {}).get("issuer"),
        }
    says = _says(all_types)
    valid = state in ("Valid", "Trusted")
    generator = _claim_generator(active)
    agents = sorted({a for m in per_manifest.values() for a in m["software_agents"]})

    trust = ""
    if state == "Valid" and "signingCredential.untrusted" in codes:
        trust = ", signer not on the trust list"
    elif state == "Invalid":
        failed = [c for c in codes if c != "signingCredential.untrusted"]
        trust = f" ({', '.join(failed[:3])})" if failed else ""
    types = sorted(set(all_types))
    if says == "synthetic":
        verdict = f"declares AI/synthetic generation ({', '.join(t for t in types if t in SYNTHETIC_SOURCE_TYPES)})"
    elif says == "captured":
        verdict = f"declares capture ({', '.join(t for t in types if t in CAPTURE_SOURCE_TYPES)})"
    else:
        verdict = "no AI or capture source type declared"
    active_types = (per_manifest.get(active_label) or {}).get("digital_source_types") or []
    if says is not None and _says(active_types) != says:
        verdict += " in an ingredient's manifest"  # e.g. an edit of a generated image
    summary = f"C2PA {state}{trust}: {verdict}"
    if agents:
        summary += f", by {', '.join(repr(a) for a in agents[:3])}"
    if generator:
        summary += f"; claim generator {generator!r}"
    return Evidence(
        "c2pa",
        summary,
        says=says,
        strong=valid and says == "synthetic",
        detail={
            "source": "c2pa",
            "validation_state": state,
            "validation_codes": codes,
            "active_manifest": active_label,
            "manifests": per_manifest,
        },
    )


# -- generator metadata ---------------------------------------------------------------------------
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_text_chunks(data: bytes) -> dict[str, str]:
    """tEXt / zTXt / iTXt chunks of a PNG, read from its bytes (all of them, also those after
    the image data, which PIL only reaches by decoding). Malformed chunks are skipped."""
    return _png_chunks(data)[0]


def _png_chunks(data: bytes) -> tuple[dict[str, str], set[bytes], bytes | None]:
    """(text chunks, chunk types seen, eXIf body) of a PNG, without decoding its pixels."""
    out: dict[str, str] = {}
    types: set[bytes] = set()
    exif = None
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        types.add(ctype)
        if ctype == b"IDAT":  # pixel data: skipped without a copy
            pos += 12 + length
            continue
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND" or len(body) < length:
            break
        try:
            if ctype == b"tEXt":
                key, _, text = body.partition(b"\0")
                out[key.decode("latin-1")] = text.decode("latin-1")
            elif ctype == b"zTXt":
                key, _, rest = body.partition(b"\0")
                text = zlib.decompressobj().decompress(rest[1:], _ZTXT_LIMIT)
                out[key.decode("latin-1")] = text.decode("latin-1")
            elif ctype == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\0")
                _tkey, _, text = rest.partition(b"\0")
                if compressed:
                    text = zlib.decompressobj().decompress(text, _ZTXT_LIMIT)
                out[key.decode("latin-1")] = text.decode("utf-8", "replace")
            elif ctype == b"eXIf":
                exif = body
        except (zlib.error, IndexError, UnicodeDecodeError):
            continue
    return out, types, exif


def _jpeg_header(data: bytes) -> bytes:
    """A JPEG's marker segments before its first scan: where EXIF, XMP and C2PA (APP11) live,
    so a large file is not searched through its image data."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return data  # not the layout expected: let the caller search everything
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image
            return data[:pos]
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return data


@dataclass
class _Scan:
    """What one pass over a file's bytes found (no pixels decoded)."""

    texts: dict[str, str] = field(default_factory=dict)
    exif: Any = None  # PIL.Image.Exif
    xmps: list[str] = field(default_factory=list)
    has_c2pa: bool = False
    notes: list[str] = field(default_factory=list)


def _scan(data: bytes) -> _Scan:
    scan = _Scan()
    if data.startswith(_PNG_SIGNATURE):
        # PIL would decode the whole image to reach an eXIf chunk after the pixel data.
        scan.texts, types, exif = _png_chunks(data)
        scan.has_c2pa = b"caBX" in types
        if exif:
            scan.exif = Image.Exif()
            try:
                scan.exif.load(exif)
            except Exception as exc:
                scan.notes.append(f"EXIF unreadable ({type(exc).__name__}: {exc})")
        xmp = scan.texts.pop("XML:com.adobe.xmp", None)
        scan.xmps = [xmp] if xmp else []
        return scan
    region = _jpeg_header(data) if data.startswith(b"\xff\xd8") else data
    scan.has_c2pa = b"c2pa" in region
    scan.xmps = [m.decode("utf-8", "replace") for m in _XMP.findall(region)]
    try:
        with Image.open(io.BytesIO(data)) as img:  # headers only: no pixels are decoded
            scan.exif = img.getexif()
    except Image.UnidentifiedImageError:
        scan.notes.append(NOT_AN_IMAGE)
    except Exception as exc:  # PIL's parsers raise many types on corrupt headers
        scan.notes.append(f"EXIF unreadable ({type(exc).__name__}: {exc})")
    return scan


def _user_comment(raw: Any) -> str | None:
    """EXIF UserComment: an 8-byte charset code, then the text (A1111 writes UTF-16 here)."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, (bytes, bytearray)) or len(raw) <= 8:
        return None
    code, body = bytes(raw[:8]), bytes(raw[8:])
    if code.startswith(b"UNICODE"):
        # piexif (A1111) writes big-endian; some writers use the file's byte order.
        be, le = body.decode("utf-16-be", "replace"), body.decode("utf-16-le", "replace")
        return (
            be
            if be.isprintable() or sum(c.isascii() for c in be) >= sum(c.isascii() for c in le)
            else le
        )
    return body.decode("utf-8", "replace").rstrip("\0")


def _metadata_fields(
    scan: _Scan | None, image: Image.Image | None
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(PNG text chunks, EXIF fields, XMP packets) from a scan of the bytes or a PIL image."""
    if scan is not None:
        texts, exif, xmps = scan.texts, scan.exif, scan.xmps
    else:
        exif = image.getexif() if image is not None else None
        info = image.info if image is not None else {}
        texts = {k: v for k, v in info.items() if isinstance(v, str)}
        xmp = info.get("xmp") or texts.pop("XML:com.adobe.xmp", None)
        xmps = [xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp] if xmp else []
    exif_fields: dict[str, str] = {}
    if exif:
        for tag, name in {**_EXIF_SOFTWARE_TAGS, **_EXIF_TEXT_TAGS}.items():
            value = exif.get(tag)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str) and value.strip("\0 "):
                exif_fields[name] = value.strip("\0 ")
        try:
            comment = _user_comment(exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT))
        except Exception:
            comment = None
        if comment and comment.strip("\0 "):
            exif_fields["UserComment"] = comment.strip("\0 ")
    return texts, exif_fields, xmps


def read_metadata(
    data: bytes | None, image: Image.Image | None = None
) -> tuple[list[Evidence], list[str]]:
    """Generator metadata evidence from file bytes (or, lacking them, a PIL image's info),
    and notes on what could not be read."""
    scan = _scan(data) if data is not None else None
    return _metadata_evidence(scan, image), (scan.notes if scan is not None else [])


def _metadata_evidence(scan: _Scan | None, image: Image.Image | None) -> list[Evidence]:
    texts, exif_fields, xmps = _metadata_fields(scan, image)
    found: list[Evidence] = []
    for key, text in texts.items():
        known = _PNG_GENERATOR_KEYS.get(key.lower())
        if known is not None and known[1](text):
            found.append(
                Evidence(
                    "metadata",
                    f"PNG {key!r} chunk ({known[0]})",
                    says="synthetic",
                    detail={"source": f"png:{key}", "value": _clip(text)},
                )
            )
        elif key.lower() in _PNG_SOFTWARE_KEYS and _GENERATOR_NAMES.search(text):
            name = _GENERATOR_NAMES.search(text).group(0)
            found.append(
                Evidence(
                    "metadata",
                    f"PNG {key!r} names a generator ({name})",
                    says="synthetic",
                    detail={"source": f"png:{key}", "value": _clip(text)},
                )
            )
    for name, value in exif_fields.items():
        if name in _EXIF_SOFTWARE_TAGS.values():
            hit = _GENERATOR_NAMES.search(value)
            summary = f"EXIF {name} names a generator ({hit.group(0)})" if hit else None
        else:
            hit = _A1111.search(value)
            summary = f"EXIF {name} holds generation parameters" if hit else None
        if summary:
            found.append(
                Evidence(
                    "metadata",
                    summary,
                    says="synthetic",
                    detail={"source": f"exif:{name}", "value": _clip(value)},
                )
            )
    for xmp in xmps:
        found += _xmp_evidence(xmp)
    return found


def _xmp_evidence(xmp: str) -> list[Evidence]:
    found: list[Evidence] = []
    types = sorted(
        {_source_type_name(next(g for g in m if g)) for m in _XMP_SOURCE_TYPE.findall(xmp)}
    )
    if types:
        says = _says(types)
        found.append(
            Evidence(
                "metadata",
                f"XMP DigitalSourceType {', '.join(types)}",
                says=says,
                detail={"source": "xmp:DigitalSourceType", "value": types},
            )
        )
    for m in _XMP_SOFTWARE.findall(xmp):
        prop, value = (m[0], m[1]) if m[0] else (m[2], m[3])
        hit = _GENERATOR_NAMES.search(value)
        if hit:
            found.append(
                Evidence(
                    "metadata",
                    f"XMP {prop.split(':')[-1]} names a generator ({hit.group(0)})",
                    says="synthetic",
                    detail={"source": f"xmp:{prop}", "value": _clip(value)},
                )
            )
    for m in _XMP_REMOTE_MANIFEST.findall(xmp):
        url = m[0] or m[1]
        found.append(
            Evidence(
                "c2pa",
                f"C2PA remote manifest referenced ({url}; not fetched)",
                detail={"source": "xmp:dcterms:provenance", "value": url},
            )
        )
    return found


# -- invisible watermark --------------------------------------------------------------------------
def watermark_block_bits(bgr: np.ndarray) -> np.ndarray:
    """One bit per 4x4 block of the U channel's Haar approximation, in the order
    `invisible-watermark`'s `EmbedMaxDct.decode` reads them (bit-exact; tested against it).

    Vectorised: the library loops over blocks in Python, computes all four Haar subbands with
    PyWavelets where only the approximation is read, and needs `opencv-python` (libGL). Here
    the approximation is the same two products and sums per axis, in PyWavelets' order
    (rows, then columns), so every coefficient is the same float (ties at `scale / 2` decide
    bits, so the order matters)."""
    import cv2

    rows, cols = bgr.shape[:2]
    yuv = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV)
    u = yuv[: rows // 4 * 4, : cols // 4 * 4, 1].astype(np.float64)
    h = _HAAR
    half = u[0::2, :] * h + u[1::2, :] * h
    ca1 = half[:, 0::2] * h + half[:, 1::2] * h
    b = _WM_BLOCK
    nr, nc = ca1.shape[0] // b, ca1.shape[1] // b
    blocks = ca1[: nr * b, : nc * b].reshape(nr, b, nc, b).swapaxes(1, 2).reshape(-1, b * b)
    pos = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1
    value = np.abs(blocks[np.arange(len(blocks)), pos])
    return (value % _WM_SCALE) > 0.5 * _WM_SCALE


def decode_watermark(block_bits: np.ndarray, length: int) -> np.ndarray:
    """Majority vote of the block bits into a `length`-bit message (as the library does)."""
    slot = np.arange(len(block_bits)) % length
    ones = np.bincount(slot, weights=block_bits.astype(np.float64), minlength=length)
    votes = np.bincount(slot, minlength=length)
    return (ones / np.maximum(votes, 1)) * 255 > 127


@functools.lru_cache(maxsize=1024)
def _binomial_tail(n: int, k: int) -> float:
    """P(at least k of n fair coin flips match): the chance a random image matches k bits."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


@functools.lru_cache(maxsize=256)
def required_matches(n_bits: int, false_alarm: float, hypotheses: int) -> int:
    """Fewest matching bits whose chance under random bits is below `false_alarm / hypotheses`."""
    for k in range(n_bits // 2, n_bits + 1):
        if _binomial_tail(n_bits, k) <= false_alarm / hypotheses:
            return k
    return n_bits + 1  # unreachable for this message length: it can never be detected


@dataclass
class WatermarkCheck:
    """The watermark check of one image: evidence when a known message matched, the best
    match rate, every message's bit count (for auditing), or why it was not checked."""

    evidence: Evidence | None = None
    match_rate: float | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None


def check_watermark(
    source: Any, false_alarm: float = 1e-6, max_pixels: int = DEFAULT_MAX_PIXELS
) -> WatermarkCheck:
    """Look for the known invisible-watermark messages in `source` (decoded at full size)."""
    img, err = read_image(source, max_pixels=max_pixels)
    if err is not None:
        return WatermarkCheck(note=f"watermark not checked: {err}")
    if img.width * img.height < _WM_MIN_SIDE**2:
        return WatermarkCheck(
            note=f"watermark not checked: {img.width}x{img.height} is under 256x256"
        )
    rgb = np.asarray(img)
    hypotheses = len(WATERMARK_MESSAGES) * len(_CHANNEL_ORDERS)
    results = []
    for order in _CHANNEL_ORDERS:
        bits = watermark_block_bits(rgb[:, :, ::-1] if order == "bgr" else rgb)
        for name, message in WATERMARK_MESSAGES.items():
            decoded = decode_watermark(bits, len(message))
            matches = int(np.count_nonzero(decoded == message.astype(bool)))
            need = required_matches(len(message), false_alarm, hypotheses)
            results.append(
                {
                    "message": name,
                    "channel_order": order,
                    "matching_bits": matches,
                    "bits": len(message),
                    "match_rate": round(matches / len(message), 4),
                    "required": need,
                    "chance_p": _binomial_tail(len(message), matches),
                }
            )
    best = max(results, key=lambda r: (r["matching_bits"] >= r["required"], r["match_rate"]))
    check = WatermarkCheck(match_rate=float(best["match_rate"]), results=results)
    if best["matching_bits"] >= best["required"]:
        summary = (
            f"{best['message']} invisible watermark: {best['matching_bits']}/{best['bits']} "
            f"bits match ({check.match_rate:.0%}; chance {best['chance_p']:.1e})"
        )
        detail = {"source": "watermark:dwtDct", "best": best, "false_alarm": false_alarm}
        check.evidence = Evidence("watermark", summary, "synthetic", strong=True, detail=detail)
    return check


# -- the checker ----------------------------------------------------------------------------------
def _load_trust_anchors(trust_anchors: str | os.PathLike | None) -> str | None:
    if trust_anchors is None:
        return None
    text = os.fspath(trust_anchors)
    if "-----BEGIN CERTIFICATE-----" not in text:
        try:
            with open(text, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read C2PA trust anchors {text!r}: {exc.strerror}") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ValueError(
                f"C2PA trust anchors {os.fspath(trust_anchors)!r} hold no PEM certificate"
            )
    return text


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
        object.__setattr__(self, "trust_anchors", _load_trust_anchors(self.trust_anchors))
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
        """Arrow / `datasets` value types of `columns`."""
        types = {
            "provenance": "string",
            "provenance_synthetic": "bool",
            "provenance_strong": "bool",
            "provenance_detail": "string",
            WATERMARK_COLUMN: "float32",
        }
        return {c: types[c] for c in self.columns}

    @property
    def features(self):
        """`datasets.Features` of `columns`."""
        from datasets import Features, Value

        return Features({c: Value(t) for c, t in self.dtypes.items()})

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
        scan = _scan(data) if data is not None else None
        if scan is not None:
            c2pa_evidence = read_c2pa(data, self.trust_anchors, present=scan.has_c2pa)
            if c2pa_evidence is not None:
                result.evidence.append(c2pa_evidence)
        if scan is not None or image is not None:
            result.evidence += _metadata_evidence(scan, image)
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
        """The provenance columns for a sequence of images, in input order."""
        images = list(images)
        mapper = executor.map if executor is not None else map
        results = list(mapper(self.check, images))
        out: dict[str, list] = {c: [] for c in self.columns}
        for r in results:
            for k, v in r.row(self.watermark).items():
                out[k].append(v)
        return out

    def __call__(
        self, batch: dict[str, Sequence[Any]], image_column: str = "image"
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


def check_provenance(
    images: Sequence[Any], *, watermark: bool = False, trust_anchors: str | None = None
) -> dict[str, list]:
    """Provenance columns for `images` without a detector (see `ProvenanceChecker`)."""
    return ProvenanceChecker(watermark=watermark, trust_anchors=trust_anchors).check_many(images)


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
    import hashlib

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
