"""Generator metadata read from file bytes: PNG text chunks (also after the image data), EXIF
and XMP fields naming generators, and what is left after metadata is stripped."""

from __future__ import annotations

import json

from PIL import Image, PngImagePlugin
from provenance_artefacts import A1111_PARAMETERS, COMFY_PROMPT, COMFY_WORKFLOW, encode

from curate.provenance import NOT_AN_IMAGE, ProvenanceChecker, png_text_chunks
from curate.provenance.metadata import metadata_evidence, scan_file

pytest_plugins = ["provenance_artefacts"]


def test_png_text_after_image_data_is_read_without_decoding(artefacts):
    data = artefacts["comfyui.png"].read_bytes()
    assert data.index(b"zTXt") > data.index(b"IDAT")
    chunks = png_text_chunks(data)
    assert json.loads(chunks["workflow"]) == COMFY_WORKFLOW
    assert json.loads(chunks["prompt"]) == COMFY_PROMPT
    # a malformed chunk stops the walk instead of raising
    assert png_text_chunks(data[: data.index(b"zTXt") + 10]).keys() == {"prompt"}


def test_scan_finds_each_place_metadata_lives(artefacts):
    """One pass over the bytes finds EXIF in a PNG's eXIf chunk, XMP in a JPEG's APP1 and in a
    PNG's iTXt, and a C2PA store's presence; a text file is noted as not an image."""
    png_exif = scan_file(artefacts["exif_software.png"].read_bytes())
    assert png_exif.exif[0x0131] == "Stable Diffusion XL" and not png_exif.has_c2pa
    jpeg_xmp = scan_file(artefacts["xmp_ai.jpg"].read_bytes())
    assert len(jpeg_xmp.xmps) == 1 and "Midjourney" in jpeg_xmp.xmps[0]
    png_xmp = scan_file(artefacts["xmp_composite.png"].read_bytes())
    assert "XML:com.adobe.xmp" not in png_xmp.texts and len(png_xmp.xmps) == 1
    assert scan_file(artefacts["c2pa_composite.png"].read_bytes()).has_c2pa
    assert scan_file(artefacts["c2pa_ai.jpg"].read_bytes()).has_c2pa
    assert scan_file(artefacts["notes.jpg"].read_bytes()).notes == [NOT_AN_IMAGE]


def test_generator_parameters_need_the_generators_format():
    """A `parameters` chunk counts only when it reads like a web UI's parameters; a long value
    is kept in the detail clipped, with its full length."""
    img = Image.new("RGB", (32, 32), (90, 120, 150))

    def evidence(key: str, text: str) -> list:
        info = PngImagePlugin.PngInfo()
        info.add_text(key, text)
        return metadata_evidence(scan_file(encode(img, "PNG", pnginfo=info)), None)

    assert evidence("parameters", "holiday photo from the lake") == []
    [found] = evidence("parameters", A1111_PARAMETERS)
    assert found.says == "synthetic" and not found.strong
    assert found.detail == {"source": "png:parameters", "value": A1111_PARAMETERS}
    long_graph = json.dumps({str(i): {"class_type": "KSampler"} for i in range(500)})
    [found] = evidence("prompt", long_graph)
    assert found.detail["value"].endswith(f"... [{len(long_graph):,} characters in all]")
    assert len(found.detail["value"]) < len(long_graph)


def test_stripped_files_carry_nothing(artefacts):
    """Decoding and saving again (what most tools do) removes every kind of metadata: absence
    of evidence is reported as such, never as "captured"."""
    for name in ("stripped_c2pa_ai.jpg", "stripped_a1111.png"):
        p = ProvenanceChecker().check(str(artefacts[name]))
        assert p.evidence == [] and p.synthetic is None and p.summary == "none found"


def test_software_fields_name_generators_not_ordinary_tools():
    """EXIF Software / Artist naming a generator is reported; ordinary cameras and editors,
    and names that merely contain a generator's letters, are not."""
    img = Image.new("RGB", (32, 32), (90, 120, 150))

    def says(tag: int, value: str) -> bool | None:
        exif = Image.Exif()
        exif[tag] = value
        return ProvenanceChecker().check(encode(img, "JPEG", exif=exif.tobytes())).synthetic

    for value in ("DALL·E 3", "Midjourney v6", "FLUX.1 [dev]", "ComfyUI", "Imagen 3"):
        assert says(0x0131, value) is True, value
    for value in ("Adobe Photoshop 25.0 (Macintosh)", "GIMP 2.10.36", "HDR+ 1.0.641377693z"):
        assert says(0x0131, value) is None, value
    assert says(0x013B, "Kendall Edwards") is None
    assert says(0x013B, "Stable Diffusion") is True
