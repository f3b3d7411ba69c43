"""Files that appear only when complete: written beside their destination, then renamed."""

from __future__ import annotations

import contextlib
import os
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
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends
    without an error, removed otherwise. `suffix` keeps an extension writers look at."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path) or ".", f".curate-{uuid.uuid4().hex[:12]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
