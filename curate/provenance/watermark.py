"""The invisible watermark that the Stable Diffusion, SDXL and FLUX reference pipelines embed
(`invisible-watermark`'s DWT-DCT method with their published messages): a bit-exact,
vectorised decoder, and a detection whose false-alarm rate is bounded.

Opt-in: it costs a full decode of each image. OpenCV (`curate[provenance]`) is imported only
when an image is checked.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.pipeline.decode import DEFAULT_MAX_PIXELS, read_image
from curate.provenance.evidence import Evidence

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
