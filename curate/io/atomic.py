"""Files that appear only when complete: written beside their destination, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator


def umask() -> int:
    """The process umask (read without changing it for good)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """A temporary path beside `path` to write to (named `temp_prefix(path)...tmp[suffix]`);
    renamed onto `path` when the block ends without an error, removed otherwise. `suffix`
    keeps an extension writers look at (".png" for matplotlib)."""
    path = os.fspath(path)
    name = f"{temp_prefix(path)}{uuid.uuid4().hex[:12]}.tmp{suffix}"
    tmp = os.path.join(os.path.dirname(path) or ".", name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def temp_prefix(path: str | os.PathLike) -> str:
    """How the temporary files of a writer of `path` begin, so a resumed job can sweep up the
    ones a killed writer left; cut so that prefix + suffix stays within a file name's limit."""
    return f".{os.path.basename(os.fspath(path))[:200]}."


def remove_temp_files(path: str | os.PathLike) -> None:
    """Remove the temporary files that killed writers of `path` left beside it."""
    folder = os.path.dirname(os.fspath(path)) or "."
    prefix = temp_prefix(path)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.startswith(prefix) and ".tmp" in name[len(prefix) :]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))


class AtomicFile:
    """Base of writers whose output appears only when complete.

    A subclass writes to `self.file`, a temporary file beside `path`, and implements
    `_finish()` (flush what it buffers, close its format writer) and `_discard()` (close it,
    errors ignored). `close()` then fsyncs and renames onto `path`; `abort()`, or an exception
    inside `with`, removes the temporary file and leaves `path` as it was. A folder, an
    existing file (unless `overwrite`) and a missing parent folder are refused up front:
    folders are never created on the caller's behalf."""

    what = "file"

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise IsADirectoryError(f"{self.path} is a directory, not a {self.what} path")
        if not overwrite and os.path.exists(self.path):
            raise FileExistsError(f"{self.path} already exists (pass overwrite=True / --overwrite)")
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"the folder {directory} does not exist; create it first")
        fd, self._tmp = tempfile.mkstemp(
            prefix=temp_prefix(self.path), suffix=".tmp", dir=directory
        )
        os.chmod(self._tmp, 0o666 & ~umask())  # mkstemp makes 0600; outputs are ordinary files
        self.file = os.fdopen(fd, "wb")
        self._done = False

    def _finish(self) -> None:
        """Write out what is buffered and close the format writer."""

    def _discard(self) -> None:
        """Close the format writer after a failure."""

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._done:
            return
        try:
            self._finish()
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Drop everything written so far; the destination is left untouched."""
        if self._done:
            return
        self._done = True
        for closer in (self._discard, self.file.close):
            with contextlib.suppress(Exception):
                closer()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
