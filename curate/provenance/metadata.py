"""Generator metadata: what image generators write into a file, read from its bytes alone.

PNG text chunks (Stable Diffusion web UIs' `parameters`, ComfyUI's `prompt` / `workflow`,
InvokeAI, Fooocus, ...), EXIF / XMP software fields naming a generator, EXIF UserComment with
generation parameters, and the IPTC digital source type in XMP. No pixels are decoded: PNG
chunks are walked directly (also those after the image data) and a JPEG is searched only up to
its first scan.
"""

from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from curate.provenance.evidence import Evidence, clip, source_type_name, source_types_say

NOT_AN_IMAGE = "not a recognised image file"

_ZTXT_LIMIT = 1 << 20  # decompressed bytes read from one compressed PNG text chunk
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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
class FileScan:
    """What one pass over a file's bytes found (no pixels decoded)."""

    texts: dict[str, str] = field(default_factory=dict)
    exif: Any = None  # PIL.Image.Exif
    xmps: list[str] = field(default_factory=list)
    has_c2pa: bool = False
    notes: list[str] = field(default_factory=list)


def scan_file(data: bytes) -> FileScan:
    """Text chunks, EXIF, XMP packets and whether a C2PA manifest store is present, from a
    file's bytes; what could not be read goes to `notes` (never raises on a bad file)."""
    scan = FileScan()
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
    scan: FileScan | None, image: Image.Image | None
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


def metadata_evidence(scan: FileScan | None, image: Image.Image | None) -> list[Evidence]:
    """Generator metadata evidence from a scan of the file's bytes or, lacking them, from what
    PIL read into a decoded image's `info` and EXIF."""
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
                    detail={"source": f"png:{key}", "value": clip(text)},
                )
            )
        elif key.lower() in _PNG_SOFTWARE_KEYS and _GENERATOR_NAMES.search(text):
            name = _GENERATOR_NAMES.search(text).group(0)
            found.append(
                Evidence(
                    "metadata",
                    f"PNG {key!r} names a generator ({name})",
                    says="synthetic",
                    detail={"source": f"png:{key}", "value": clip(text)},
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
                    detail={"source": f"exif:{name}", "value": clip(value)},
                )
            )
    for xmp in xmps:
        found += _xmp_evidence(xmp)
    return found


def _xmp_evidence(xmp: str) -> list[Evidence]:
    """IPTC digital source type, generator-naming software fields, and remote C2PA manifest
    references (reported, never fetched) in one XMP packet."""
    found: list[Evidence] = []
    types = sorted(
        {source_type_name(next(g for g in m if g)) for m in _XMP_SOURCE_TYPE.findall(xmp)}
    )
    if types:
        says = source_types_say(types)
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
                    detail={"source": f"xmp:{prop}", "value": clip(value)},
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
