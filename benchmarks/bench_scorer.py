"""End-to-end throughput of DeepfakeScorer against the model card's reference loop.

In one run, on the same ~1 MP JPEG files and the full-size architecture (random weights, the
real checkpoint's cost: see curate.testing.FULL_SIZE): times the seed's reference loop (one
image at a time, AutoImageProcessor + model + softmax), then DeepfakeScorer in each
configuration asked for, in interleaved rounds (so a shared machine's load hits every config
alike); measures the machine's matmul peaks (fp32, bf16, int8) in the same run; prints for
each config images/s (median round), the ratio to the reference loop (median of the per-round
ratios), CPU seconds per image (all threads; steadier than wall time on a loaded machine, run
with OMP_WAIT_POLICY=PASSIVE so idle OpenMP threads do not spin), the fraction of its compute
dtype's matmul peak, the max |dp| against the fp32 reference, and any one-off compile cost.
`--profile` adds where the time goes per image: decode, resize, to tensor + normalise,
forward, each stage timed alone.

    python benchmarks/bench_scorer.py --images 12 --profile
    python benchmarks/bench_scorer.py --device cuda --images 2048 --no-reference

A config is DTYPE[:BATCH][:OPTION...]: DTYPE fp32, bf16, fp16 or auto (the scorer's
default); options compile (compiled from the first batch: the steady state of a long run
with the default compile="auto"; without it the config runs eagerly, as a short default run
does), int8 (quantize="int8", compiled), torch (resize on the device), pil, nvjpeg, draft;
e.g. `bf16:4`, `auto:16:compile`, `auto:16:int8`, `bf16:auto:nvjpeg`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from curate import DeepfakeScorer  # noqa: E402
from curate.testing import ReferenceDetector, build_random_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "images"


def model_gflop(config) -> float:
    """Forward GFLOP for one image (2 x multiply-adds): patch embedding, encoder layers
    (projections, attention scores and mixing, MLP) and the attention-pooling head."""
    v = config.vision_config
    n = (v.image_size // v.patch_size) ** 2
    d, m = v.hidden_size, v.intermediate_size
    patch = n * 3 * v.patch_size**2 * d
    layer = 4 * n * d * d + 2 * n * n * d + 2 * n * d * m
    head = 2 * n * d * d + 2 * d * d + 2 * d * m + 2 * n * d  # k/v of all tokens, 1 query
    return 2 * (patch + v.num_hidden_layers * layer + head) / 1e9


def matmul_peak(
    dtype: torch.dtype, device: torch.device, n: int = 4096, reps: int = 5, cpu_time: bool = False
) -> float:
    """GFLOP/s (GOP/s for int8: `torch._int_mm`) of an n x n matmul, best of `reps`; with
    `cpu_time`, GFLOP per CPU second (all threads), which load on a shared machine barely
    moves."""
    if dtype == torch.int8:
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        mm = torch._int_mm
    else:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        mm = torch.matmul
    mm(a, b)
    clock = time.process_time if cpu_time else time.perf_counter
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = clock()
        mm(a, b)
        _sync(device)
        best = min(best, clock() - t)
    return 2 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[str]:
    """`count` distinct ~1 MP JPEGs (quality 90) made from the example photos: resized to
    `size`, flipped and shifted so no two files are the same."""
    photos = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    paths = []
    for i in range(count):
        img = Image.open(photos[i % len(photos)]).convert("RGB")
        w, h = img.size
        dx, dy = (i // len(photos)) % 7, (i // len(photos)) % 5
        img = img.crop((dx, dy, w - (6 - dx), h - (4 - dy))).resize(size, Image.Resampling.LANCZOS)
        if (i // len(photos)) % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def reference_loop(ref: ReferenceDetector, paths: list[str]) -> tuple[float, np.ndarray]:
    """The seed's code path: each file read to a numpy array (what its gradio app receives),
    then `classify_image` (Image.fromarray(...).convert("RGB"), processor, model, softmax)."""
    fake = next(i for i, name in ref.id2label.items() if name.lower() == "fake")
    t = time.perf_counter()
    probs = []
    for p in paths:
        probs.append(
            ref.probabilities(np.asarray(Image.open(p).convert("RGB")))[ref.id2label[fake]]
        )
    return len(paths) / (time.perf_counter() - t), np.asarray(probs)


def parse_config(spec: str) -> tuple[str, dict]:
    """`DTYPE[:BATCH][:OPTION...]` as DeepfakeScorer keyword arguments (see the docstring)."""
    parts = spec.split(":")
    dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(parts[0], parts[0])
    kw: dict = {"dtype": dtype, "compile": False}
    for part in parts[1:]:
        if part.isdigit() or part == "auto":
            kw["batch_size"] = int(part) if part.isdigit() else part
        elif part == "compile":
            kw["compile"] = True
        elif part == "int8":
            kw.update(quantize="int8", compile=True)
        elif part in ("torch", "pil"):
            kw["resize"] = part
        elif part == "nvjpeg":
            kw["decode"] = "nvjpeg"
        elif part == "draft":
            kw["draft"] = True
        else:
            raise SystemExit(f"unknown config option {part!r} in {spec!r}")
    return spec, kw


def compute_dtype(scorer: DeepfakeScorer) -> str:
    """The dtype whose matmul peak bounds the config: int8 when quantised, else the model's."""
    return "int8" if scorer.quantize else str(scorer.detector.dtype).removeprefix("torch.")


def profile(scorer: DeepfakeScorer, paths: list[str]) -> dict[str, float]:
    """Seconds per image of each stage, run alone, in this order: decode (read + decode, one
    thread), resize (PIL, one thread), to tensor + normalise (or, with resize="torch", upload +
    resize + normalise on the device), forward (synchronised); and the scorer's own decode +
    resize on its worker threads (wall), which runs beside the forward in a real run."""
    from curate.pipeline.decode import read_image
    from curate.pipeline.preprocess import normalize, pinned_batch, resize, resize_on_device

    det = scorer.detector
    n, size = len(paths), scorer.chunk_size(det)
    on_device = scorer.resize_mode(det) == "torch"
    t = time.perf_counter()
    images = [read_image(p)[0] for p in paths]
    decode = time.perf_counter() - t
    t = time.perf_counter()
    arrays = [np.array(i) if on_device else resize(i, det.preprocess) for i in images]
    resized = time.perf_counter() - t
    chunks = [arrays[i : i + size] for i in range(0, n, size)]
    _sync(det.device)
    t = time.perf_counter()
    pixels = []
    for chunk in chunks:
        if on_device:
            pixels.append(resize_on_device(chunk, det.preprocess, det.device, det.dtype))
        else:
            batch = pinned_batch(chunk, det.device)
            pixels.append(normalize(batch, det.preprocess, det.device, det.dtype))
    _sync(det.device)
    normalise = time.perf_counter() - t
    t = time.perf_counter()
    for x in pixels:
        det.logits(x)
    _sync(det.device)
    forward = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(0, n, size):
        scorer._prepare(paths[i : i + size], det)
    threads = time.perf_counter() - t
    return {
        "decode_s": decode / n,
        "resize_s": resized / n,
        "normalise_s": normalise / n,
        "forward_s": forward / n,
        "decode_resize_on_threads_s": threads / n,
    }


def print_profile(spec: str, split: dict[str, float]) -> None:
    stages = ("decode", "resize", "normalise", "forward")
    total = sum(split[f"{k}_s"] for k in stages)
    cells = "  ".join(
        f"{k} {split[f'{k}_s'] * 1e3:7.1f} ms {split[f'{k}_s'] / total:5.1%}" for k in stages
    )
    threads = split["decode_resize_on_threads_s"]
    print(f"  {spec:32s} per image: {cells}   decode+resize on the scorer's threads "
          f"{threads * 1e3:.1f} ms = {threads / split['forward_s']:.0%} of the forward")  # fmt: skip


def default_configs(device: torch.device) -> str:
    if device.type == "cuda":
        return "auto:auto,auto:auto:nvjpeg,auto:auto:compile"
    # The exact path; the default in a short run (eager) and a long one (compiled); int8.
    return "fp32:8,auto:16,auto:16:compile,auto:16:int8"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=12, help="JPEG files to score (default 12)")
    ap.add_argument("--size", default="1152x864", help="JPEG size WxH (default ~1 MP)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--configs",
        default=None,
        help="comma-separated DeepfakeScorer configs (see above; default on CPU: "
        "fp32:8,auto:16,auto:16:compile,auto:16:int8; on CUDA: "
        "auto:auto,auto:auto:nvjpeg,auto:auto:compile)",
    )
    ap.add_argument("--no-reference", action="store_true", help="skip the reference loop")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds over all configs (default 3); each rate is its median round "
        "and each ratio the median of its per-round ratios, which keeps a shared machine's "
        "load from favouring whichever config ran when it was quiet",
    )
    ap.add_argument("--profile", action="store_true", help="time each stage alone, per config")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--checkpoint", default=None, help="full-size checkpoint dir (built if absent)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    w, h = (int(x) for x in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    ckpt = args.checkpoint or str(work / "full")
    if not (Path(ckpt) / "model.safetensors").exists():
        build_random_checkpoint(ckpt, full_size=True)
    from transformers import AutoConfig

    gflop = model_gflop(AutoConfig.from_pretrained(ckpt))
    (work / "jpegs").mkdir()
    paths = make_jpegs(work / "jpegs", args.images, (w, h))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')}, "
          f"{len(paths)} JPEGs of {w}x{h}, {gflop:.1f} GFLOP/image")  # fmt: skip
    specs = [parse_config(s) for s in (args.configs or default_configs(device)).split(",") if s]
    peak_dtypes = ["float32", "bfloat16"] + (["int8"] if any("int8" in s for s, _ in specs) else [])
    peak = {dt: matmul_peak(getattr(torch, dt), device) for dt in peak_dtypes}
    print(
        "matmul peak 4096^2: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()) + " G(FL)OP/s"
    )
    results: dict = {"device": name, "images": len(paths), "gflop_per_image": gflop, "peak": peak}
    cpu_peak: dict[str, float] = {}
    if device.type == "cpu":
        cpu_peak = {dt: matmul_peak(getattr(torch, dt), device, cpu_time=True) for dt in peak}
        results["peak_per_cpu_second"] = cpu_peak
    ref = None
    if not args.no_reference:
        ref = ReferenceDetector(ckpt)
        ref.probabilities(np.asarray(Image.open(paths[0]).convert("RGB")))  # warm-up
    scorers, setup = {}, {}
    for spec, kw in specs:
        scorer = DeepfakeScorer(ckpt, device=args.device, with_logits=True, **kw)
        t = time.perf_counter()
        scorer.load()
        loaded = time.perf_counter() - t
        scorer.score_images(paths[: scorer.chunk_size()])  # warm-up (and compile)
        model = scorer.detector.model
        setup[spec] = {"load_s": loaded, "compile_s": getattr(model, "compile_seconds", None)}
        scorers[spec] = scorer
    runs: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    ref_p, outs = None, {}
    for _ in range(args.rounds):
        if ref is not None:
            t, c = time.perf_counter(), time.process_time()
            ref_p = reference_loop(ref, paths)[1]
            runs.setdefault("reference", []).append(len(paths) / (time.perf_counter() - t))
            cpu.setdefault("reference", []).append((time.process_time() - c) / len(paths))
        for spec, scorer in scorers.items():
            t, c = time.perf_counter(), time.process_time()
            outs[spec] = scorer.score_images(paths)
            runs.setdefault(spec, []).append(len(paths) / (time.perf_counter() - t))
            cpu.setdefault(spec, []).append((time.process_time() - c) / len(paths))
            assert all(e is None for e in outs[spec]["deepfake_error"])
    results["rounds"] = runs
    results["cpu_s_per_image_rounds"] = cpu
    # The peaks again after the runs: the higher reading is the less disturbed one.
    for dt in peak:
        peak[dt] = max(peak[dt], matmul_peak(getattr(torch, dt), device))
    print("matmul peak (best of start and end): "
          + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()) + " G(FL)OP/s")  # fmt: skip
    has_ref = ref is not None
    if has_ref:
        rate, cps = float(np.median(runs["reference"])), float(np.median(cpu["reference"]))
        in_cpu = f" ({gflop / cps / cpu_peak['float32']:.0%} in CPU time)" if cpu_peak else ""
        print(f"{'reference loop (seed, fp32)':32s} {rate:7.2f} img/s  1.00x  cpu {cps:5.2f} s/img"
              f"  1.00x   {rate * gflop / peak['float32']:6.1%} of float32 peak{in_cpu}")  # fmt: skip
        results["reference"] = {"images_per_s": rate, "cpu_s_per_image": cps}
    results["configs"] = {}
    for spec, scorer in scorers.items():
        out, rate = outs[spec], float(np.median(runs[spec]))
        cps, dtype = float(np.median(cpu[spec])), compute_dtype(scorer)
        row = {
            "images_per_s": rate,
            "cpu_s_per_image": cps,
            "fraction_of_peak": rate * gflop / peak.get(dtype, np.nan),
            "peak_dtype": dtype,
            **setup[spec],
        }
        if cpu_peak:  # the same fraction in CPU time: steady under load
            row["cpu_fraction_of_peak"] = gflop / cps / cpu_peak.get(dtype, np.nan)
        line = f"{spec:32s} {rate:7.2f} img/s"
        if has_ref:
            ratios = np.array(runs[spec]) / np.array(runs["reference"])
            cpu_ratio = float(np.median(np.array(cpu["reference"]) / np.array(cpu[spec])))
            dp = np.abs(np.asarray(out["fake_prob"], dtype=np.float64) - ref_p)
            row.update(
                ratio_to_reference=float(np.median(ratios)),
                cpu_ratio_to_reference=cpu_ratio,
                max_abs_dp_vs_fp32_reference=float(dp.max()),
            )
            line += f" {row['ratio_to_reference']:5.2f}x"
        line += f"  cpu {cps:5.2f} s/img"
        if has_ref:
            line += f" {row['cpu_ratio_to_reference']:5.2f}x"
        line += f"   {row['fraction_of_peak']:6.1%} of {dtype} peak"
        if cpu_peak:
            line += f" ({row['cpu_fraction_of_peak']:.0%} in CPU time)"
        if has_ref:
            line += f"   max|dp| {row['max_abs_dp_vs_fp32_reference']:.1e}"
        if row["compile_s"] is not None:
            line += f"   one-off: load {row['load_s']:.0f} s + compile {row['compile_s']:.0f} s"
        print(line, flush=True)
        results["configs"][spec] = row
    print("rounds (images/s): " + "; ".join(
        f"{k} " + "/".join(f"{r:.2f}" for r in v) for k, v in runs.items()
    ))  # fmt: skip
    if args.profile:
        print("where the time goes (each stage alone; shares of their sum):")
        for spec, scorer in scorers.items():
            split = profile(scorer, paths)
            results["configs"][spec]["profile"] = split
            print_profile(spec, split)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
