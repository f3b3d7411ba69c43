"""Image files as a source: folders (recursive, sorted, filtered), single images, path lists,
and every entry that is not a readable image file (special files, links to nowhere, names
that are not UTF-8, folders that cannot be listed, files over the size cap) as a row with a
reason, never a hang, a crash or a silently missing row."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from source_rows import rows

from curate.pipeline.decode import path_on_disk, read_image
from curate.sources import SourceError, list_images, path_list_source, resolve_source
from curate.sources.files import folder_source


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "imgs"
    for rel in ["b.jpg", "a/z.PNG", "a/b/c.webp", "B.tiff", "x.gif", "y.bmp", "q.jpeg", "w.tif"]:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (5, 5)).save(d / rel)
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.jpg").write_bytes(b"x")
    (d / ".cache").mkdir()
    (d / ".cache" / "skip.jpg").write_bytes(b"x")
    return d


def test_folder_is_recursive_sorted_and_filtered(folder):
    names = ["B.tiff", "a/b/c.webp", "a/z.PNG", "b.jpg", "q.jpeg", "w.tif", "x.gif", "y.bmp"]
    assert [p.replace("\\", "/") for p in list_images(folder)] == names
    source = resolve_source(folder)
    assert (source.kind, source.num_rows, source.image_column) == ("folder", 8, "image")
    got = rows(source)
    assert [r["image"]["path"] for r in got] == names
    assert got[3]["image"]["bytes"] == (folder / "b.jpg").read_bytes()
    assert [r["image"]["path"] for r in rows(source, start=5)] == names[5:]
    limited = resolve_source(folder, limit=3, image_column="img")
    assert [r["img"]["path"] for r in rows(limited, batch_size=2)] == names[:3]


def test_symlinked_folders_are_followed_once(folder):
    (folder / "a" / "loop").symlink_to(folder, target_is_directory=True)
    (folder.parent / "outside").mkdir()
    Image.new("RGB", (5, 5)).save(folder.parent / "outside" / "o.png")
    (folder / "linked").symlink_to(folder.parent / "outside", target_is_directory=True)
    names = [p.replace("\\", "/") for p in list_images(folder)]
    assert "linked/o.png" in names and len(names) == 9
    assert not any("loop" in n for n in names)


def test_single_image_and_path_list(folder):
    source = resolve_source(folder / "b.jpg")
    assert (source.kind, source.num_rows) == ("image", 1)
    assert rows(source)[0]["image"] == {"bytes": (folder / "b.jpg").read_bytes(), "path": "b.jpg"}
    paths = [str(folder / "x.gif"), str(folder / "b.jpg")]
    listed = path_list_source(paths)
    assert (listed.kind, listed.num_rows) == ("files", 2)
    assert [r["image"]["path"] for r in rows(listed)] == paths  # as given, in that order
    with pytest.raises(SourceError, match="no image files given"):
        path_list_source([])


def _special_folder(base: Path, photo: str) -> dict[str, str]:
    """A folder with one good photo and one entry of every kind that is not an image file;
    {name: what its row's reason must say}."""
    shutil.copy(photo, base / "good.jpg")
    os.mkfifo(base / "fifo.png")
    (base / "zero.png").symlink_to("/dev/zero")
    (base / "dangling.jpg").symlink_to(base / "nowhere.jpg")
    (base / "loop1.jpg").symlink_to(base / "loop2.jpg")
    (base / "loop2.jpg").symlink_to(base / "loop1.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(base / "sock.png"))
    sock.close()
    (base / "empty.jpg").write_bytes(b"")
    return {
        "fifo.png": "is a named pipe (FIFO), not an image file",
        "zero.png": "is a symbolic link to a device (/dev/zero), not an image file",
        "dangling.jpg": "broken symbolic link",
        "loop1.jpg": "symbolic link loop",
        "loop2.jpg": "symbolic link loop",
        "sock.png": "is a socket, not an image file",
        "empty.jpg": "empty file (0 bytes)",
    }


@pytest.mark.timeout(120)
def test_special_files_are_rows_with_reasons(tmp_path, photo_paths, tiny_checkpoint):
    """A FIFO named x.png used to hang the run; a link to /dev/zero read until memory ran out."""
    from curate.runs import ScoringRun
    from curate.scorer import DeepfakeScorer

    d = tmp_path / "special"
    d.mkdir()
    want = _special_folder(d, photo_paths[0])
    (d / "dir.jpg").mkdir()  # a folder named like an image is a folder: its images are listed
    shutil.copy(photo_paths[1], d / "dir.jpg" / "inside.jpg")
    names = sorted([*want, "good.jpg", "dir.jpg/inside.jpg"])
    assert list_images(d) == names
    source = resolve_source(d)
    by_name = {}
    for row in rows(source, batch_size=4):
        image = row["image"]
        by_name[os.path.basename(image["path"])] = image
    assert by_name["good.jpg"]["bytes"] == (d / "good.jpg").read_bytes()
    for name in want:
        # Unread, with the absolute path so the scorer (and a person) can say what it is.
        if name != "empty.jpg":
            assert by_name[name] == {"bytes": None, "path": str(d / name)}, name

    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32", batch_size=4)
    out = tmp_path / "scored.parquet"
    assert ScoringRun(source, scorer, out).run() == len(names)
    table = pq.read_table(out).to_pylist()
    reasons = {os.path.basename(r["image"]["path"]): r["deepfake_error"] for r in table}
    assert reasons["good.jpg"] is None and reasons["inside.jpg"] is None
    for name, says in want.items():
        assert says in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    # The same rows from the real CLI, in a subprocess.
    from conftest import run_curate

    cli = tmp_path / "cli.parquet"
    done = run_curate("score", d, "-o", cli, "--model", tiny_checkpoint, "--device", "cpu",
                      "--dtype", "float32", "--batch-size", "4", timeout=100)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    cli_reasons = {
        os.path.basename(r["image"]["path"]): r["deepfake_error"]
        for r in pq.read_table(cli).to_pylist()
    }
    assert cli_reasons == reasons


@pytest.mark.timeout(120)
def test_a_name_that_is_not_utf8_is_a_row(tmp_path, photo_paths, tiny_checkpoint):
    """Such a name used to kill the run at the Parquet write (naming no file), and every re-run
    resumed into the same failure."""
    from curate.runs import ScoringRun
    from curate.scorer import DeepfakeScorer

    d = tmp_path / "names"
    d.mkdir()
    raw = os.fsencode(d) + b"/caf\xe9.jpg"  # Latin-1 e-acute: not UTF-8
    shutil.copy(photo_paths[0], raw)
    os.mkfifo(os.fsencode(d) + b"/pipe\xff.png")
    shutil.copy(photo_paths[1], d / "plain.jpg")
    source = resolve_source(d)
    got = {r["image"]["path"]: r["image"] for r in rows(source)}
    assert sorted(got) == [str(d / "pipe\\xff.png"), "caf\\xe9.jpg", "plain.jpg"]
    assert got["caf\\xe9.jpg"]["bytes"] == Path(photo_paths[0]).read_bytes()
    # The stored name still identifies the file.
    assert os.fsencode(path_on_disk(str(d / "caf\\xe9.jpg"))) == raw

    scorer = DeepfakeScorer(tiny_checkpoint, device="cpu", dtype="float32")
    out = tmp_path / "scored.parquet"
    assert ScoringRun(source, scorer, out).run() == 3
    table = {r["image"]["path"]: r for r in pq.read_table(out).to_pylist()}
    assert table["caf\\xe9.jpg"]["deepfake_error"] is None
    assert table["caf\\xe9.jpg"]["fake_prob"] is not None
    # The FIFO's stored path leads back to it: its reason is the FIFO's, not "file not found".
    assert "named pipe (FIFO)" in table[str(d / "pipe\\xff.png")]["deepfake_error"]


@pytest.mark.timeout(60)
def test_files_over_max_file_bytes_are_not_read(tmp_path, photo_paths):
    d = tmp_path / "sizes"
    d.mkdir()
    shutil.copy(photo_paths[0], d / "big.jpg")
    Image.new("RGB", (4, 4)).save(d / "small.png")
    cap = os.path.getsize(d / "small.png")
    source = folder_source(str(d), max_file_bytes=cap)
    got = {os.path.basename(r["image"]["path"]): r["image"] for r in rows(source)}
    assert got["small.png"]["bytes"] == (d / "small.png").read_bytes()
    assert got["big.jpg"] == {"bytes": None, "path": str(d / "big.jpg")}
    _, reason = read_image(got["big.jpg"], max_file_bytes=cap)
    assert f"over max_file_bytes={cap:,} bytes" in reason
    assert read_image(got["big.jpg"])[1] is None  # under the default cap it reads


def _unreadable_tree() -> str:
    """A folder holding a sub-folder, an empty sub-folder and a file that nobody may read."""
    top = tempfile.mkdtemp(prefix="curate-perm-")
    os.chmod(top, 0o755)
    d = Path(top)
    Image.new("RGB", (4, 4)).save(d / "ok.png")
    (d / "locked").mkdir()
    Image.new("RGB", (4, 4)).save(d / "locked" / "hidden-from-us.png")
    os.chmod(d / "locked", 0)
    Image.new("RGB", (4, 4)).save(d / "secret.jpg")
    os.chmod(d / "secret.jpg", 0)
    (d / "closed").mkdir()
    os.chmod(d / "closed", 0)
    return top


def _see(top: str) -> dict:
    """What listing and reading `top` gives (rows' bytes as their length), as JSON values."""
    out = {"names": list_images(top)}
    source = resolve_source(top)
    out["rows"] = [r["image"] for r in rows(source)]
    out["reasons"] = {
        os.path.basename(r["path"]): read_image(r)[1] for r in out["rows"] if r["bytes"] is None
    }
    for r in out["rows"]:
        if r["bytes"] is not None:
            r["bytes"] = len(r["bytes"])
    try:
        resolve_source(os.path.join(top, "closed"))
    except SourceError as exc:
        out["closed"] = str(exc)
    return out


def _as_nobody(fn, *args) -> dict:
    """`fn(*args)` in a forked child running as `nobody` (root ignores permissions)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            result = json.dumps(fn(*args)).encode()
        except BaseException as exc:  # report, never return into pytest in the child
            result, code = json.dumps({"error": repr(exc)}).encode(), 1
        with os.fdopen(write, "wb") as f:
            f.write(result)
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.timeout(60)
def test_a_folder_that_cannot_be_read_is_a_row(tmp_path):
    """It used to be skipped silently: its images got no row and no warning."""
    top = _unreadable_tree()
    try:
        seen = _as_nobody(_see, top) if os.geteuid() == 0 else _see(top)
    finally:
        for p in ("locked", "secret.jpg", "closed"):
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(top, p), 0o755)
        shutil.rmtree(top, ignore_errors=True)
    assert "error" not in seen, seen
    assert seen["names"] == ["closed", "locked", "ok.png", "secret.jpg"]
    paths = [r["path"] for r in seen["rows"]]
    assert paths == [os.path.join(top, "closed"), os.path.join(top, "locked"), "ok.png",
                     os.path.join(top, "secret.jpg")]  # fmt: skip
    assert seen["rows"][2]["bytes"] > 0
    assert "a folder that cannot be read (permission denied)" in seen["reasons"]["locked"]
    assert "a folder that cannot be read (permission denied)" in seen["reasons"]["closed"]
    assert seen["reasons"]["secret.jpg"].startswith("permission denied: cannot read")
    assert "cannot list the folder" in seen["closed"] and "Permission denied" in seen["closed"]
