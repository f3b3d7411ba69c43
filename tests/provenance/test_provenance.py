"""Provenance evidence on real artefacts made here: C2PA-signed files (a certificate chain
generated in the test), generator metadata, SD / SDXL watermarks embedded with
`invisible-watermark`, stripped and broken files."""

from __future__ import annotations

import datetime
import io
import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import run_curate as _curate
from PIL import Image, PngImagePlugin

from curate.provenance import (
    NONE_FOUND,
    PROVENANCE_COLUMNS,
    WATERMARK_COLUMN,
    WATERMARK_MESSAGES,
    ProvenanceChecker,
    decode_watermark,
    png_text_chunks,
    required_matches,
    resolve_provenance,
    watermark_block_bits,
)

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


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
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
    jpeg = _encode(base, "JPEG", quality=92)
    files: dict[str, bytes] = {}

    files["c2pa_ai.jpg"] = _sign(jpeg, "image/jpeg", "trainedAlgorithmicMedia", cert, key)
    files["c2pa_composite.png"] = _sign(
        _encode(other, "PNG"), "image/png", "compositeWithTrainedAlgorithmicMedia", cert, key
    )
    files["c2pa_capture.jpg"] = _sign(jpeg, "image/jpeg", "digitalCapture", cert, key)
    rotated = Image.open(io.BytesIO(files["c2pa_ai.jpg"])).rotate(90)
    files["c2pa_edit_of_ai.jpg"] = _sign_edit(
        files["c2pa_ai.jpg"], _encode(rotated, "JPEG", quality=92), cert, key
    )
    tampered = bytearray(files["c2pa_ai.jpg"])
    tampered[-200] ^= 0x01  # one bit of the entropy-coded data: still decodes, hash differs
    files["c2pa_tampered.jpg"] = bytes(tampered)

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_PARAMETERS)
    files["a1111.png"] = _encode(base, "PNG", pnginfo=info)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("prompt", json.dumps(COMFY_PROMPT), zip=True)
    files["comfyui.png"] = _append_text_after_idat(
        _encode(base, "PNG", pnginfo=info), "workflow", json.dumps(COMFY_WORKFLOW)
    )
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("parameters", "holiday photo from the lake")  # not a generator's format
    files["novelai.png"] = _encode(base, "PNG", pnginfo=info)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111_PARAMETERS.encode("utf-16-be")
    files["a1111_exif.jpg"] = _encode(base, "JPEG", quality=92, exif=exif.tobytes())
    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly Image 3"
    files["firefly_software.jpg"] = _encode(base, "JPEG", quality=92, exif=exif.tobytes())
    files["xmp_ai.jpg"] = _encode(
        base, "JPEG", quality=92, xmp=_xmp("trainedAlgorithmicMedia", "Midjourney v6")
    )
    exif = Image.Exif()
    exif[0x0131] = "Stable Diffusion XL"
    files["exif_software.png"] = _encode(base, "PNG", exif=exif.tobytes())
    info = PngImagePlugin.PngInfo()
    info.add_itxt(
        "XML:com.adobe.xmp", _xmp("compositeWithTrainedAlgorithmicMedia").decode(), zip=True
    )
    files["xmp_composite.png"] = _encode(base, "PNG", pnginfo=info)
    files["xmp_ai.webp"] = _encode(base, "WEBP", quality=90, xmp=_xmp("trainedAlgorithmicMedia"))
    camera = Image.Exif()
    camera[0x010F], camera[0x0110], camera[0x0131] = "Canon", "Canon EOS R5", "Firmware 1.8.1"
    files["camera_exif.jpg"] = _encode(base, "JPEG", quality=92, exif=camera.tobytes())

    # The same files with their metadata stripped (decoded and saved again, as most tools do).
    files["stripped_c2pa_ai.jpg"] = _encode(Image.open(io.BytesIO(files["c2pa_ai.jpg"])), "JPEG")
    files["stripped_a1111.png"] = _encode(Image.open(io.BytesIO(files["a1111.png"])), "PNG")

    rgb, rgb2 = np.asarray(base), np.asarray(other)
    sdxl, sd1 = WATERMARK_MESSAGES["SDXL"], WATERMARK_MESSAGES["Stable Diffusion 1.x"]
    flux = WATERMARK_MESSAGES["FLUX"]
    files["wm_sdxl.png"] = _encode(Image.fromarray(_embed(rgb, sdxl, "bgr")), "PNG")
    files["wm_sdxl_diffusers.png"] = _encode(Image.fromarray(_embed(rgb, sdxl, "rgb")), "PNG")
    files["wm_flux.png"] = _encode(Image.fromarray(_embed(rgb2, flux, "bgr")), "PNG")
    files["wm_sd1.jpg"] = _encode(
        Image.fromarray(_embed(rgb2, sd1, "bgr")), "JPEG", quality=95, subsampling=0
    )
    files["clean.png"] = _encode(base, "PNG")
    files["clean.jpg"] = _encode(other, "JPEG", quality=95, subsampling=0)

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


# -- tests ----------------------------------------------------------------------------------------
def test_each_artefact_reports_its_evidence(artefacts):
    checker = ProvenanceChecker()
    for name, path in artefacts.items():
        check_expected(name, checker.check(str(path)).row())


def test_input_forms_agree(artefacts):
    """Path, bytes, {"bytes", "path"} dict and a PIL image opened from the file agree."""
    checker = ProvenanceChecker()
    for name in ("c2pa_ai.jpg", "comfyui.png", "a1111_exif.jpg", "xmp_ai.jpg"):
        path = artefacts[name]
        data = path.read_bytes()
        rows = [
            checker.check(x).row()
            for x in (str(path), path, data, {"bytes": data, "path": None}, {"path": str(path)})
        ]
        rows.append(checker.check(Image.open(path)).row())
        assert all(r == rows[0] for r in rows), name


def test_decoded_image_without_file_keeps_what_pil_read(artefacts):
    """A PIL image decoded from bytes (what `datasets` gives) has no file: C2PA cannot be
    checked, and the row says so; text chunks PIL read are still reported."""
    img = Image.open(io.BytesIO(artefacts["a1111.png"].read_bytes()))
    img.load()
    p = ProvenanceChecker().check(img)
    assert p.synthetic is True and "parameters" in p.summary
    assert "C2PA not checked" in p.summary
    arr = np.asarray(img.convert("RGB"))
    p = ProvenanceChecker().check(arr)
    assert p.synthetic is None and "no file bytes (ndarray)" in p.summary


def test_c2pa_validation_is_reported_honestly(artefacts, chain):
    """Untrusted chain: "Valid" with `signingCredential.untrusted`; with the test root as a
    trust anchor: "Trusted"; tampered: "Invalid" with the failing check, and not strong."""
    detail = json.loads(
        ProvenanceChecker().check(str(artefacts["c2pa_ai.jpg"])).row()["provenance_detail"]
    )
    ev = detail["evidence"][0]
    assert ev["validation_state"] == "Valid"
    assert "signingCredential.untrusted" in ev["validation_codes"]
    manifest = ev["manifests"][ev["active_manifest"]]
    assert manifest["claim_generator"].startswith("curate-tests 1.0")
    assert manifest["software_agents"] == ["TestDiffusion 2.0"]
    assert manifest["digital_source_types"] == ["trainedAlgorithmicMedia"]
    assert manifest["signer"] == "curate test signer"

    trusted = ProvenanceChecker(trust_anchors=chain[2]).check(str(artefacts["c2pa_ai.jpg"]))
    assert trusted.summary.startswith("C2PA Trusted:") and trusted.strong

    tampered = json.loads(
        ProvenanceChecker().check(str(artefacts["c2pa_tampered.jpg"])).row()["provenance_detail"]
    )
    assert tampered["evidence"][0]["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in tampered["evidence"][0]["validation_codes"]


def test_trust_anchor_file_and_bad_settings(tmp_path, chain):
    pem = tmp_path / "anchors.pem"
    pem.write_text(chain[2])
    assert ProvenanceChecker(trust_anchors=str(pem)).trust_anchors == chain[2]
    with pytest.raises(ValueError, match="cannot read C2PA trust anchors"):
        ProvenanceChecker(trust_anchors=str(tmp_path / "missing.pem"))
    (tmp_path / "empty.pem").write_text("nothing here")
    with pytest.raises(ValueError, match="hold no PEM certificate"):
        ProvenanceChecker(trust_anchors=str(tmp_path / "empty.pem"))
    with pytest.raises(ValueError, match="watermark_false_alarm"):
        ProvenanceChecker(watermark_false_alarm=0)
    with pytest.raises(ValueError, match="provenance must be"):
        resolve_provenance("yes")


def test_png_text_after_image_data_is_read_without_decoding(artefacts):
    data = artefacts["comfyui.png"].read_bytes()
    assert data.index(b"zTXt") > data.index(b"IDAT")
    chunks = png_text_chunks(data)
    assert json.loads(chunks["workflow"]) == COMFY_WORKFLOW
    assert json.loads(chunks["prompt"]) == COMFY_PROMPT
    # a malformed chunk stops the walk instead of raising
    assert png_text_chunks(data[: data.index(b"zTXt") + 10]).keys() == {"prompt"}


def test_watermark_decoder_is_bit_exact_with_invisible_watermark(artefacts, photo_paths):
    imwatermark = pytest.importorskip("imwatermark")
    noise = np.random.default_rng(0).integers(0, 256, (263, 301, 3), dtype=np.uint8)
    files = [*photo_paths, *(artefacts[n] for n in ("wm_sdxl.png", "wm_sd1.jpg", "wm_flux.png"))]
    for bgr in [np.asarray(Image.open(p).convert("RGB"))[:, :, ::-1].copy() for p in files] + [
        noise
    ]:
        bits = watermark_block_bits(bgr)
        for message in WATERMARK_MESSAGES.values():
            ref = imwatermark.WatermarkDecoder("bits", len(message)).decode(bgr, "dwtDct")
            assert np.array_equal(decode_watermark(bits, len(message)), np.asarray(ref, bool))


def test_watermark_detected_on_marked_files_only(artefacts):
    checker = ProvenanceChecker(watermark=True)
    for name, message in WATERMARKED.items():
        row = checker.check(str(artefacts[name])).row(watermark=True)
        check_expected(name, row, watermark=True)
        best = json.loads(row["provenance_detail"])["evidence"][-1]["best"]
        assert best["message"] == message
        assert best["matching_bits"] >= best["required"]
        assert row[WATERMARK_COLUMN] >= 0.9
    for name in ("clean.png", "clean.jpg", "stripped_a1111.png"):
        row = checker.check(str(artefacts[name])).row(watermark=True)
        assert row["provenance"] == NONE_FOUND and row["provenance_strong"] is False
        assert row[WATERMARK_COLUMN] < 0.75
        tried = json.loads(row["provenance_detail"])["watermark"]  # every message, for audit
        assert len(tried) == 8 and all(r["matching_bits"] < r["required"] for r in tried)


def test_watermark_false_positive_rate_on_real_photos(photo_paths):
    """No real photo of the project is reported as watermarked (the rate is 0 / n; the
    highest chance match rate is far below every message's requirement)."""
    rows = ProvenanceChecker(watermark=True).check_many(photo_paths)
    assert rows["provenance"] == [NONE_FOUND] * len(photo_paths)
    assert max(rows[WATERMARK_COLUMN]) < 0.7
    # the tolerance follows from the false-alarm bound: longer messages tolerate more errors
    assert required_matches(48, 1e-6, 8) == 42 and required_matches(136, 1e-6, 8) == 99


def test_watermark_check_small_and_broken(broken_images, tmp_path):
    small = tmp_path / "small.png"
    Image.new("RGB", (200, 200), (10, 20, 30)).save(small)
    p = ProvenanceChecker(watermark=True).check(str(small))
    assert "under 256x256" in p.summary and p.watermark_match is None
    p = ProvenanceChecker(watermark=True).check(broken_images["bomb"])
    assert "watermark not checked" in p.summary and "decompression bomb" in p.summary


def test_broken_inputs_give_reasons_never_raise(broken_images):
    checker = ProvenanceChecker(watermark=True)
    rows = checker.check_many(list(broken_images.values()))
    by_name = dict(zip(broken_images, rows["provenance"], strict=True))
    assert by_name["zero_bytes"] == "error: empty file (0 bytes)"
    assert by_name["not_an_image"] == "error: not a recognised image file"
    assert by_name["missing_file"].startswith("error: file not found")
    assert by_name["null"] == "error: no image (null value)"
    assert by_name["garbage_bytes"] == "error: not a recognised image file"
    # a truncated file still has readable headers: no evidence, and the pixels' failure noted
    assert by_name["truncated"].startswith(NONE_FOUND + "; watermark not checked: cannot decode")
    assert all(s is None for s in rows["provenance_synthetic"])
    assert not any(rows["provenance_strong"])


def test_checker_pickles_and_columns(artefacts):
    checker = ProvenanceChecker(watermark=True, watermark_false_alarm=1e-4)
    clone = pickle.loads(pickle.dumps(checker))
    assert clone == checker
    assert checker.columns == (*PROVENANCE_COLUMNS, WATERMARK_COLUMN)
    assert ProvenanceChecker().columns == PROVENANCE_COLUMNS
    out = clone.check_many([str(artefacts["c2pa_ai.jpg"]), None])
    assert set(out) == set(checker.columns) and all(len(v) == 2 for v in out.values())
    assert resolve_provenance(True) == ProvenanceChecker()
    assert resolve_provenance("watermark").watermark is True
    assert resolve_provenance(False) is None


def _copy_folder(artefacts: dict[str, Path], dest: Path) -> Path:
    dest.mkdir()
    for name, path in artefacts.items():
        shutil.copy(path, dest / name)
    return dest


# -- front ends -----------------------------------------------------------------------------------
def test_scorer_adds_provenance_columns(tiny_checkpoint, artefacts):
    from curate import DeepfakeScorer

    names = ["c2pa_ai.jpg", "a1111.png", "clean.png", "notes.jpg"]
    scorer = DeepfakeScorer(tiny_checkpoint, batch_size=2, provenance=True)
    assert scorer.columns[-4:] == PROVENANCE_COLUMNS
    out = scorer.score_images([str(artefacts[n]) for n in names])
    assert set(out) == set(scorer.columns)
    for i, name in enumerate(names):
        check_expected(name, {c: out[c][i] for c in PROVENANCE_COLUMNS})
    # the score columns are untouched by the option
    plain = DeepfakeScorer(tiny_checkpoint, batch_size=2).score_images(
        [str(artefacts[n]) for n in names]
    )
    assert plain["fake_prob"] == out["fake_prob"]
    clone = pickle.loads(pickle.dumps(DeepfakeScorer(tiny_checkpoint, provenance="watermark")))
    assert clone.provenance == ProvenanceChecker(watermark=True)
    assert clone.columns[-1] == WATERMARK_COLUMN


def test_score_dataset_with_provenance(tiny_checkpoint, artefacts):
    """Through `score_dataset` the image column is read undecoded, so C2PA and every chunk
    survive; the provenance columns get their own types."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    from curate import score_dataset

    names = ["c2pa_ai.jpg", "c2pa_capture.jpg", "comfyui.png", "wm_sdxl.png", "stripped_a1111.png"]
    ds = Dataset.from_dict({"image": [str(artefacts[n]) for n in names]}).cast_column(
        "image", ImageFeature()
    )
    scored = score_dataset(ds, model=tiny_checkpoint, provenance="watermark", batch_size=4)
    assert scored.features["provenance_synthetic"].dtype == "bool"
    assert scored.features[WATERMARK_COLUMN].dtype == "float32"
    rows = scored.remove_columns("image").to_list()
    for name, row in zip(names, rows, strict=True):
        check_expected(name, row, watermark=True)


# -- the decision rule ----------------------------------------------------------------------------
def test_decision_rule_provenance_options_agree_row_and_column():
    from curate.filtering import DecisionRule

    probs = [0.1, 0.1, 0.1, 0.9, 0.9, 0.9, None, None, 0.6, 0.1]
    synthetic = [None, True, True, False, None, True, None, True, True, False]
    strong = [False, False, True, False, False, True, False, True, False, False]
    expected = {
        (False, False): ["keep", "keep", "keep", "remove", "remove", "remove"]
        + ["unscored", "unscored", "review", "keep"],
        (True, False): ["keep", "keep", "remove", "remove", "remove", "remove"]
        + ["unscored", "remove", "review", "keep"],
        (False, True): ["keep", "review", "review", "review", "remove", "remove"]
        + ["unscored", "unscored", "review", "keep"],
        (True, True): ["keep", "review", "remove", "review", "remove", "remove"]
        + ["unscored", "remove", "review", "keep"],
    }
    for (strong_removes, conflicts), want in expected.items():
        rule = DecisionRule(
            0.5,
            review_band=(0.3, 0.7),
            remove_strong_evidence=strong_removes,
            review_conflicts=conflicts,
        )
        rows = [rule.decide(p, s, t) for p, s, t in zip(probs, synthetic, strong, strict=True)]
        assert rows == want, (strong_removes, conflicts)
        assert list(rule.decide_many(probs, synthetic, strong)) == want
        import pyarrow as pa

        table = pa.table(
            {
                "fake_prob": pa.array(probs, pa.float32()),
                "provenance_synthetic": pa.array(synthetic, pa.bool_()),
                "provenance_strong": pa.array(strong, pa.bool_()),
            }
        )
        assert list(rule.decide_columns(table)) == want
    assert DecisionRule(review_conflicts=True).can_review
    assert not DecisionRule().uses_provenance
    with pytest.raises(ValueError, match="no provenance_synthetic"):
        DecisionRule(remove_strong_evidence=True).decide_columns({"fake_prob": [0.1]})
    with pytest.raises(ValueError, match="review_conflicts must be True or False"):
        DecisionRule(review_conflicts="yes")


def test_filter_drops_c2pa_ai_images_the_score_alone_keeps(tiny_checkpoint, artefacts, tmp_path):
    """With a threshold no image reaches, the score keeps everything; the provenance option
    removes exactly the rows with strong evidence, and conflicts go to review."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets import Image as ImageFeature

    from curate import score_dataset
    from curate.filtering import DecisionRule, filter_parquet, filter_synthetic
    from curate.io.parquet import write_parquet

    names = ["c2pa_ai.jpg", "c2pa_composite.png", "c2pa_tampered.jpg", "a1111.png", "clean.png"]
    ds = Dataset.from_dict(
        {"name": names, "image": [str(artefacts[n]) for n in names]}
    ).cast_column("image", ImageFeature())
    scored = score_dataset(ds, model=tiny_checkpoint, provenance=True)
    assert max(scored["fake_prob"]) < 1.0

    by_score = filter_synthetic(scored, DecisionRule(threshold=1.0))
    assert by_score.kept["name"] == names
    rule = DecisionRule(threshold=1.0, remove_strong_evidence=True)
    split = filter_synthetic(scored, rule)
    assert split.removed["name"] == ["c2pa_ai.jpg", "c2pa_composite.png"]
    assert split.kept["name"] == ["c2pa_tampered.jpg", "a1111.png", "clean.png"]
    split = filter_synthetic(
        scored, DecisionRule(threshold=1.0, remove_strong_evidence=True, review_conflicts=True)
    )
    assert split.review["name"] == ["c2pa_tampered.jpg", "a1111.png"]
    assert split.kept["name"] == ["clean.png"]

    src = tmp_path / "scored.parquet"
    write_parquet([scored.to_dict()], src)
    kept, removed = tmp_path / "kept.parquet", tmp_path / "removed.parquet"
    counts = filter_parquet(src, kept, rule, removed=removed, unscored=tmp_path / "u.parquet")
    assert (counts.keep, counts.remove) == (3, 2)
    assert pq.read_table(removed).column("name").to_pylist() == [
        "c2pa_ai.jpg",
        "c2pa_composite.png",
    ]
    meta = pq.read_schema(kept).metadata
    assert meta[b"curate.remove_strong_evidence"] == b"true"


# -- the command line -----------------------------------------------------------------------------
def test_cli_score_provenance_and_filter(tiny_checkpoint, artefacts, tmp_path):
    """`curate score --provenance --watermark` on a folder of the artefacts reports each
    file's evidence; `curate filter --remove-strong-evidence` drops the C2PA-declared and
    watermarked images that the score alone keeps."""
    import pyarrow.parquet as pq

    folder = _copy_folder(artefacts, tmp_path / "artefacts")
    out = tmp_path / "scored.parquet"
    proc = _curate("score", folder, "-o", out, "--model", tiny_checkpoint, "--watermark")
    assert proc.returncode == 0, proc.stderr
    assert "Provenance evidence: " in proc.stdout
    assert "absence proves nothing" in proc.stdout
    table = pq.read_table(out)
    assert json.loads(table.schema.metadata[b"curate.provenance"])["watermark"] is True
    rows = table.drop_columns(["image"]).to_pylist()
    paths = [p["path"] for p in table.column("image").to_pylist()]
    names = [Path(p).name for p in paths]
    assert sorted(names) == sorted(artefacts)
    for name, row in zip(names, rows, strict=True):
        check_expected(name, row, watermark=True)
    strong = sorted(n for n, r in zip(names, rows, strict=True) if r["provenance_strong"])
    assert strong == sorted({n for n, e in EXPECTED.items() if e[1]} | set(WATERMARKED))
    assert "c2pa_ai.jpg" in strong and "c2pa_edit_of_ai.jpg" in strong

    kept, removed = tmp_path / "kept.parquet", tmp_path / "removed.parquet"
    base = [
        "filter",
        out,
        "-o",
        kept,
        "--removed",
        removed,
        "--threshold",
        "1",
        "--unscored",
        "keep",
    ]
    proc = _curate(*base)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(removed).num_rows == 0  # the score alone keeps every row
    proc = _curate(*base, "--remove-strong-evidence", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    gone = sorted(Path(p["path"]).name for p in pq.read_table(removed).column("image").to_pylist())
    assert gone == strong
    assert pq.read_table(kept).num_rows == len(artefacts) - len(strong)

    # without provenance columns the option is refused with one line, not a traceback
    plain = tmp_path / "plain.parquet"
    pq.write_table(table.drop_columns([c for c in table.column_names if "provenance" in c]), plain)
    proc = _curate("filter", plain, "-o", tmp_path / "k2.parquet", "--remove-strong-evidence")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "score with `curate score --provenance`" in proc.stderr


def test_cli_single_image_prints_provenance(tiny_checkpoint, artefacts):
    proc = _curate("score", artefacts["c2pa_ai.jpg"], "--model", tiny_checkpoint, "--provenance")
    assert proc.returncode == 0, proc.stderr
    assert "provenance: C2PA Valid" in proc.stdout


# -- FiftyOne -------------------------------------------------------------------------------------
def _fiftyone():
    import os
    import sys
    import tempfile

    plugins = str(Path(__file__).resolve().parents[2] / "plugins")
    if "fiftyone" not in sys.modules:  # a throwaway database, never the user's
        os.environ["FIFTYONE_DATABASE_DIR"] = tempfile.mkdtemp(prefix="curate-fo-db-")
        os.environ["FIFTYONE_PLUGINS_DIR"] = plugins
        os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
        os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    fo = pytest.importorskip("fiftyone")
    if fo.config.plugins_dir != plugins:
        fo.config.plugins_dir = plugins
    return fo


def test_fiftyone_operator_writes_provenance_fields_and_rule_agrees(
    tiny_checkpoint, artefacts, tmp_path
):
    """The detect operator, asked for provenance, writes the evidence fields the checker gives;
    the provenance-aware rule's views select exactly what `DecisionRule.decide` says, and the
    apply operator tags the strong-evidence samples that the score alone keeps."""
    fo = _fiftyone()
    import fiftyone.operators as foo

    from curate.filtering import OUTCOMES, DecisionRule
    from curate.integrations import fiftyone as cfo

    names = ["c2pa_ai.jpg", "c2pa_capture.jpg", "a1111.png", "clean.png", "wm_sdxl.png"]
    names += ["notes.jpg"]
    ds = fo.Dataset()
    try:
        ds.add_samples([fo.Sample(filepath=str(artefacts[n])) for n in names])
        detect = foo.get_operator("@curate/deepfakes/detect_deepfakes")
        detect(ds, model=tiny_checkpoint, provenance=True, watermark=True)
        checker = ProvenanceChecker(watermark=True)
        for sample in ds.iter_samples():
            want = checker.check(sample.filepath).row(watermark=True)
            got = {c: sample[c] for c in want}
            assert got == pytest.approx(want), Path(sample.filepath).name
            check_expected(Path(sample.filepath).name, got, watermark=True)

        probs, synth, strong = ds.values(["fake_prob", "provenance_synthetic", "provenance_strong"])
        for flags in ((True, False), (False, True), (True, True)):
            for threshold in (0.0, 0.5, 1.0):
                rule = DecisionRule(
                    threshold, remove_strong_evidence=flags[0], review_conflicts=flags[1]
                )
                want = rule.decide_many(probs, synth, strong)
                views = cfo.decision_views(ds, rule)
                for outcome in OUTCOMES:
                    assert len(views[outcome]) == int((want == outcome).sum()), (rule, outcome)

        act = foo.get_operator("@curate/deepfakes/apply_deepfake_threshold")
        act(ds, threshold=1.0, unscored="keep", remove_strong_evidence=True)
        tagged = sorted(Path(s.filepath).name for s in ds.match_tags(cfo.REMOVE_TAG))
        assert tagged == ["c2pa_ai.jpg", "wm_sdxl.png"]

        import pyarrow.parquet as pq

        out = tmp_path / "kept.parquet"
        rule = DecisionRule(1.0, unscored="keep", remove_strong_evidence=True)
        assert cfo.export_parquet(ds, out, rule=rule, outcomes=("keep",)) == len(names) - 2
        table = pq.read_table(out)
        assert set(PROVENANCE_COLUMNS) <= set(table.column_names)
        assert not any(table.column("provenance_strong").to_pylist())
        assert set(table.column("decision").to_pylist()) == {"keep"}
    finally:
        ds.delete()


def test_software_fields_name_generators_not_ordinary_tools():
    """EXIF Software / Artist naming a generator is reported; ordinary cameras and editors,
    and names that merely contain a generator's letters, are not."""
    img = Image.new("RGB", (32, 32), (90, 120, 150))

    def says(tag: int, value: str) -> bool | None:
        exif = Image.Exif()
        exif[tag] = value
        return ProvenanceChecker().check(_encode(img, "JPEG", exif=exif.tobytes())).synthetic

    for value in ("DALL·E 3", "Midjourney v6", "FLUX.1 [dev]", "ComfyUI", "Imagen 3"):
        assert says(0x0131, value) is True, value
    for value in ("Adobe Photoshop 25.0 (Macintosh)", "GIMP 2.10.36", "HDR+ 1.0.641377693z"):
        assert says(0x0131, value) is None, value
    assert says(0x013B, "Kendall Edwards") is None
    assert says(0x013B, "Stable Diffusion") is True
