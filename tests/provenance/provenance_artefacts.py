"""Real provenance artefacts for the provenance tests, as a pytest plugin (`pytest_plugins =
["provenance_artefacts"]` in each test module that uses them, so the session fixtures are
built once for all of them): C2PA-signed files under a certificate chain generated here,
generator metadata, SD / SDXL / FLUX watermarks embedded with `invisible-watermark`, stripped
and broken files; `EXPECTED` says what each holds.

PYTEST_DONT_REWRITE: the test modules import this before pytest loads it as a plugin, too late
to rewrite its asserts; `check_expected`'s asserts carry their own messages instead."""

from __future__ import annotations

import datetime
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from curate.provenance import NONE_FOUND, WATERMARK_MESSAGES

c2pa = pytest.importorskip("c2pa")
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111_PARAMETERS = (
    "a lighthouse at dusk, oil painting\nNegative prompt: blurry\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, "
    "Model: sd_xl_base_1.0"
)
COMFY_PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}}}
COMFY_WORKFLOW = {"nodes": [{"id": 3, "type": "KSampler"}], "links": []}


# -- artefact builders ----------------------------------------------------------------------------
def _cert_chain() -> tuple[bytes, bytes, str]:
    """(leaf + root PEM chain, leaf private key PEM, root PEM): an untrusted test CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "curate tests"),
            ]
        )

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(sign, False, False, False, False, ca, ca, False, False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("curate test root"))
        .issuer_name(name("curate test root"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(False, True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("curate test signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(True, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    return chain, key_pem, ca.public_bytes(pem).decode()


def _signer(chain: bytes, key: bytes):
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))


def _sign_edit(parent: bytes, edited: bytes, chain: bytes, key: bytes) -> bytes:
    """An edit (opened + edited, no source type of its own) of a signed parent ingredient."""
    manifest = {
        "claim_generator_info": [{"name": "curate-tests-editor", "version": "1.0"}],
        "title": "edited",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}},
                        {"action": "c2pa.edited"},
                    ]
                },
            }
        ],
    }
    ingredient = {"title": "parent", "relationship": "parentOf", "label": "parent"}
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.add_ingredient(ingredient, "image/jpeg", io.BytesIO(parent))
        builder.sign(_signer(chain, key), "image/jpeg", io.BytesIO(edited), out)
    return out.getvalue()


def _sign(data: bytes, mime: str, source_type: str, chain: bytes, key: bytes) -> bytes:
    signer = _signer(chain, key)
    manifest = {
        "claim_generator_info": [{"name": "curate-tests", "version": "1.0"}],
        "title": "artefact",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC + source_type,
                            "softwareAgent": {"name": "TestDiffusion", "version": "2.0"},
                        }
                    ]
                },
            }
        ],
    }
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _append_text_after_idat(png: bytes, key: str, text: str) -> bytes:
    """A zTXt chunk after the image data (where PIL's header read does not look)."""
    iend = png.rindex(b"IEND") - 4
    body = key.encode("latin-1") + b"\0\0" + zlib.compress(text.encode("latin-1"))
    return png[:iend] + _png_chunk(b"zTXt", body) + png[iend:]


def _xmp(source_type: str, creator_tool: str | None = None) -> bytes:
    tool = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:xmp="http://ns.adobe.com/xap/1.0/"{tool} '
        f'Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"/></rdf:RDF></x:xmpmeta>'
    ).encode()


def _embed(rgb: np.ndarray, bits: np.ndarray, order: str) -> np.ndarray:
    """Embed `bits` the way the reference pipelines do: BGR uint8 (CompVis, Stability) or,
    as diffusers does, the RGB float array handed over as is."""
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", [int(b) for b in bits])
    if order == "bgr":
        return encoder.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")[:, :, ::-1]
    marked = encoder.encode(rgb.astype(np.float32), "dwtDct")
    return np.clip(np.round(marked), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def chain() -> tuple[bytes, bytes, str]:
    return _cert_chain()


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory, photo_paths, chain) -> dict[str, Path]:
    """A folder of files with known provenance (name -> path); `EXPECTED` says what each holds."""
    d = tmp_path_factory.mktemp("provenance")
    cert, key, _ = chain
    by_name = {Path(p).stem: p for p in photo_paths}
    base = Image.open(by_name["astronaut"]).convert("RGB").resize((512, 512), Image.BILINEAR)
    other = Image.open(by_name["rocket"]).convert("RGB").resize((512, 512), Image.BILINEAR)
    jpeg = encode(base, "JPEG", quality=92)
    files: dict[str, bytes] = {}

    files["c2pa_ai.jpg"] = _sign(jpeg, "image/jpeg", "trainedAlgorithmicMedia", cert, key)
    files["c2pa_composite.png"] = _sign(
        encode(other, "PNG"), "image/png", "compositeWithTrainedAlgorithmicMedia", cert, key
    )
    files["c2pa_capture.jpg"] = _sign(jpeg, "image/jpeg", "digitalCapture", cert, key)
    rotated = Image.open(io.BytesIO(files["c2pa_ai.jpg"])).rotate(90)
    files["c2pa_edit_of_ai.jpg"] = _sign_edit(
        files["c2pa_ai.jpg"], encode(rotated, "JPEG", quality=92), cert, key
    )
    tampered = bytearray(files["c2pa_ai.jpg"])
    tampered[-200] ^= 0x01  # one bit of the entropy-coded data: still decodes, hash differs
    files["c2pa_tampered.jpg"] = bytes(tampered)

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_PARAMETERS)
    files["a1111.png"] = encode(base, "PNG", pnginfo=info)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("prompt", json.dumps(COMFY_PROMPT), zip=True)
    files["comfyui.png"] = _append_text_after_idat(
        encode(base, "PNG", pnginfo=info), "workflow", json.dumps(COMFY_WORKFLOW)
    )
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("parameters", "holiday photo from the lake")  # not a generator's format
    files["novelai.png"] = encode(base, "PNG", pnginfo=info)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111_PARAMETERS.encode("utf-16-be")
    files["a1111_exif.jpg"] = encode(base, "JPEG", quality=92, exif=exif.tobytes())
    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly Image 3"
    files["firefly_software.jpg"] = encode(base, "JPEG", quality=92, exif=exif.tobytes())
    files["xmp_ai.jpg"] = encode(
        base, "JPEG", quality=92, xmp=_xmp("trainedAlgorithmicMedia", "Midjourney v6")
    )
    exif = Image.Exif()
    exif[0x0131] = "Stable Diffusion XL"
    files["exif_software.png"] = encode(base, "PNG", exif=exif.tobytes())
    info = PngImagePlugin.PngInfo()
    info.add_itxt(
        "XML:com.adobe.xmp", _xmp("compositeWithTrainedAlgorithmicMedia").decode(), zip=True
    )
    files["xmp_composite.png"] = encode(base, "PNG", pnginfo=info)
    files["xmp_ai.webp"] = encode(base, "WEBP", quality=90, xmp=_xmp("trainedAlgorithmicMedia"))
    camera = Image.Exif()
    camera[0x010F], camera[0x0110], camera[0x0131] = "Canon", "Canon EOS R5", "Firmware 1.8.1"
    files["camera_exif.jpg"] = encode(base, "JPEG", quality=92, exif=camera.tobytes())

    # The same files with their metadata stripped (decoded and saved again, as most tools do).
    files["stripped_c2pa_ai.jpg"] = encode(Image.open(io.BytesIO(files["c2pa_ai.jpg"])), "JPEG")
    files["stripped_a1111.png"] = encode(Image.open(io.BytesIO(files["a1111.png"])), "PNG")

    rgb, rgb2 = np.asarray(base), np.asarray(other)
    sdxl, sd1 = WATERMARK_MESSAGES["SDXL"], WATERMARK_MESSAGES["Stable Diffusion 1.x"]
    flux = WATERMARK_MESSAGES["FLUX"]
    files["wm_sdxl.png"] = encode(Image.fromarray(_embed(rgb, sdxl, "bgr")), "PNG")
    files["wm_sdxl_diffusers.png"] = encode(Image.fromarray(_embed(rgb, sdxl, "rgb")), "PNG")
    files["wm_flux.png"] = encode(Image.fromarray(_embed(rgb2, flux, "bgr")), "PNG")
    files["wm_sd1.jpg"] = encode(
        Image.fromarray(_embed(rgb2, sd1, "bgr")), "JPEG", quality=95, subsampling=0
    )
    files["clean.png"] = encode(base, "PNG")
    files["clean.jpg"] = encode(other, "JPEG", quality=95, subsampling=0)

    out = {}
    for name, data in files.items():
        (d / name).write_bytes(data)
        out[name] = d / name
    (d / "notes.jpg").write_text("not an image\n")
    out["notes.jpg"] = d / "notes.jpg"
    return out


# name -> (synthetic, strong, words the summary must contain). Watermark files only carry
# evidence when the watermark check is on; without it they read as "none found".
EXPECTED = {
    "c2pa_ai.jpg": (True, True, ["C2PA Valid", "trust list", "trainedAlgorithmicMedia"]),
    "c2pa_composite.png": (True, True, ["C2PA Valid", "compositeWithTrainedAlgorithmicMedia"]),
    "c2pa_capture.jpg": (False, False, ["C2PA Valid", "declares capture (digitalCapture)"]),
    "c2pa_edit_of_ai.jpg": (True, True, ["C2PA Valid", "in an ingredient's manifest", "editor"]),
    "c2pa_tampered.jpg": (True, False, ["C2PA Invalid", "assertion.dataHash.mismatch"]),
    "a1111.png": (True, False, ["PNG 'parameters' chunk"]),
    "comfyui.png": (True, False, ["PNG 'prompt' chunk", "PNG 'workflow' chunk"]),
    "novelai.png": (True, False, ["PNG 'Software' names a generator (NovelAI)"]),
    "a1111_exif.jpg": (True, False, ["EXIF UserComment holds generation parameters"]),
    "firefly_software.jpg": (True, False, ["EXIF Software names a generator (Adobe Firefly)"]),
    "xmp_ai.jpg": (True, False, ["XMP DigitalSourceType trainedAlgorithmicMedia", "Midjourney"]),
    "exif_software.png": (True, False, ["EXIF Software names a generator (Stable Diffusion"]),
    "xmp_composite.png": (
        True,
        False,
        ["XMP DigitalSourceType compositeWithTrainedAlgorithmicMedia"],
    ),
    "xmp_ai.webp": (True, False, ["XMP DigitalSourceType trainedAlgorithmicMedia"]),
    "camera_exif.jpg": (None, False, [NONE_FOUND]),
    "stripped_c2pa_ai.jpg": (None, False, [NONE_FOUND]),
    "stripped_a1111.png": (None, False, [NONE_FOUND]),
    "wm_sdxl.png": (None, False, [NONE_FOUND]),
    "wm_sdxl_diffusers.png": (None, False, [NONE_FOUND]),
    "wm_flux.png": (None, False, [NONE_FOUND]),
    "wm_sd1.jpg": (None, False, [NONE_FOUND]),
    "clean.png": (None, False, [NONE_FOUND]),
    "clean.jpg": (None, False, [NONE_FOUND]),
    "notes.jpg": (None, False, ["error: not a recognised image file"]),
}
WATERMARKED = {
    "wm_sdxl.png": "SDXL",
    "wm_sdxl_diffusers.png": "SDXL",
    "wm_flux.png": "FLUX",
    "wm_sd1.jpg": "Stable Diffusion 1.x",
}


def check_expected(name: str, row: dict, watermark: bool = False) -> None:
    """Assert one row's provenance columns against `EXPECTED` (shared with the CLI test)."""
    synthetic, strong, words = EXPECTED[name]
    if watermark and name in WATERMARKED:
        synthetic, strong, words = True, True, [f"{WATERMARKED[name]} invisible watermark"]
    assert row["provenance_synthetic"] is synthetic, (name, row["provenance"])
    assert row["provenance_strong"] is strong, (name, row["provenance"])
    for w in words:
        assert w in row["provenance"], (name, w, row["provenance"])
    evidence = json.loads(row["provenance_detail"])["evidence"]
    assert bool(evidence) is (synthetic is not None), (name, evidence)
