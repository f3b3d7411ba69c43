"""WebDataset tar shards: read samples member by member, write shards whose members are
byte-identical copies, atomically.

A sample is a run of consecutive regular members sharing a key, as the `webdataset` library
groups them: the key is a member's path up to the first dot of its base name, the extension
the rest (lower-cased), so `shard/000123.jpg` and `shard/000123.json` form sample
`shard/000123`. Reading streams (`tarfile` "r|*", plain or compressed) and keeps one sample in
memory at a time. A shard that is cut short or damaged is not an exception: the sample it was
reading when the data ended, or a placeholder sample if none was under way, carries the reason
in `TarSample.error`, so a reader turns it into a row that says why.
"""

from __future__ import annotations

import copy
import os
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from curate.io.atomic import AtomicFile

# The `webdataset` library's key/extension split and its metadata members (`__x__`), skipped.
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_META = re.compile(r"__[^/]*__($|/)")
TAR_EXTENSIONS = (".tar", ".tar.gz", ".tgz")


def split_member_name(name: str) -> tuple[str | None, str | None]:
    """`(key, extension)` of a member name as `webdataset` splits it; `(None, None)` for a name
    without an extension."""
    m = _KEY_EXT.match(name)
    if not m:
        return None, None
    return m.group(1), m.group(2).lower()


@dataclass
class TarSample:
    """One sample of a shard: its key and its members in tar order (header and bytes).

    `error` says why the sample is incomplete (the shard ended or broke while it was read);
    a placeholder for a shard that broke between samples has `key` None and no members."""

    key: str | None
    members: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)
    error: str | None = None

    def by_extension(self) -> dict[str, bytes]:
        """The members' bytes by extension (the first of two members with one extension)."""
        out: dict[str, bytes] = {}
        for info, data in self.members:
            ext = split_member_name(info.name)[1]
            if ext is not None:
                out.setdefault(ext, data)
        return out

    def name_of(self, extension: str) -> str | None:
        """The member name holding `extension`, if any."""
        for info, _ in self.members:
            if split_member_name(info.name)[1] == extension:
                return info.name
        return None


class _TarInfo(tarfile.TarInfo):
    # tarfile ends its iteration silently on a missing, short or garbled header, exactly as
    # on the end-of-archive marker; remembering which header error ended it tells a shard cut
    # short from a complete one.
    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.HeaderError as exc:
            tar._curate_end = exc  # type: ignore[attr-defined]
            raise


_BROKEN = (tarfile.TarError, EOFError, OSError, zlib.error)


def _ended_early(tar: tarfile.TarFile) -> str | None:
    end = getattr(tar, "_curate_end", None)
    if end is None or isinstance(end, tarfile.EOFHeaderError):
        return None  # the zero block that ends an archive
    if isinstance(end, tarfile.EmptyHeaderError):
        return "the shard ends without its end-of-archive marker (truncated?)"
    return f"the shard ends in a damaged header ({end})"


def read_samples(path: str | os.PathLike) -> Iterator[TarSample]:
    """The samples of the tar shard at `path` (plain, .gz, .bz2 or .xz), in order, streamed.

    Non-regular members and `webdataset` metadata (`__x__`) are skipped, as that library does.
    Raises `OSError` only when the file cannot be opened at all; a shard that is truncated or
    corrupt yields what it holds, then a sample with `error` set (see `TarSample`)."""
    path = os.fspath(path)
    with open(path, "rb") as raw:
        current: TarSample | None = None
        count = 0
        try:
            tar = tarfile.open(fileobj=raw, mode="r|*", tarinfo=_TarInfo)  # noqa: SIM115
        except _BROKEN as exc:
            yield TarSample(None, error=f"cannot read {path} as a tar shard: {exc}")
            return
        try:
            for info in tar:
                tar.members = []  # streaming: keep no headers, memory stays flat
                if not info.isreg() or _META.match(info.name):
                    continue
                key, _ = split_member_name(info.name)
                if key is None:
                    continue
                if current is not None and key != current.key:
                    yield current
                    count += 1
                    current = None
                if current is None:
                    current = TarSample(key)
                reader = tar.extractfile(info)
                data = reader.read() if reader is not None else b""
                current.members.append((_plain_header(info), data))
            why = _ended_early(tar)
        except _BROKEN as exc:
            why = f"the shard is truncated or corrupt: {exc}"
        if why is not None:
            if current is not None:
                current.error = f"{why}: sample {count + 1} of the shard is cut short"
            else:
                current = TarSample(None, error=f"{why}, after sample {count}")
        if current is not None:
            yield current


def sample_extensions(path: str | os.PathLike) -> Iterator[tuple[str, list[str]]]:
    """`(key, extensions)` of each sample of a shard, from the member headers alone (a plain
    tar is read by seeking from header to header, not through its data). Stops quietly where
    the shard is damaged: for a first look at what a shard holds, not for reading it."""
    key: str | None = None
    exts: list[str] = []
    try:
        with tarfile.open(os.fspath(path), mode="r:*") as tar:
            for info in tar:
                tar.members = []
                if not info.isreg() or _META.match(info.name):
                    continue
                k, ext = split_member_name(info.name)
                if k is None:
                    continue
                if k != key and key is not None:
                    yield key, exts
                    exts = []
                key = k
                exts.append(ext)
    except _BROKEN:
        pass
    if key is not None:
        yield key, exts


def _plain_header(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A copy of `info` as an ordinary `TarInfo`, with no tie to the archive it came from."""
    out = tarfile.TarInfo(info.name)
    for attr in ("size", "mtime", "mode", "uid", "gid", "uname", "gname", "type", "pax_headers"):
        setattr(out, attr, copy.copy(getattr(info, attr)))
    return out


class TarShardWriter(AtomicFile):
    """Write samples into a tar shard at `path`, through a temporary file beside it.

    Each member keeps its name, mode, owner and time, and its bytes unchanged; samples and
    members keep the order they are given in. `close()` fsyncs and renames; `abort()` (or an
    exception inside `with`) removes the temporary file and leaves `path` as it was (see
    `curate.io.atomic.AtomicFile`). The format is POSIX (PAX), which stores any name length;
    `.tar.gz` / `.tgz` paths are gzip-compressed."""

    what = "tar shard"

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        super().__init__(path, overwrite=overwrite)
        mode = "w|gz" if self.path.lower().endswith((".gz", ".tgz")) else "w|"
        # Closed by close() / abort(), not by a `with` here: the writer outlives __init__.
        self._tar = tarfile.open(  # noqa: SIM115
            fileobj=self.file, mode=mode, format=tarfile.PAX_FORMAT
        )
        self.samples = 0

    def write(self, sample: TarSample) -> None:
        """Append every member of `sample`, bytes and header as read."""
        import io

        for info, data in sample.members:
            header = _plain_header(info)
            header.size = len(data)
            self._tar.addfile(header, io.BytesIO(data))
        self.samples += 1

    def _finish(self) -> None:
        self._tar.close()

    def _discard(self) -> None:
        self._tar.close()

    def close(self) -> int:
        """Finish the shard and move it into place; returns the number of samples written."""
        super().close()
        return self.samples


def split_shard(
    path: str | os.PathLike,
    decisions: Iterable[tuple[str | None, str]],
    targets: Mapping[str, str | os.PathLike],
    *,
    overwrite: bool = False,
) -> dict[str, int]:
    """Copy the samples of the shard at `path` into one shard per outcome.

    `decisions` gives `(key, outcome)` for each sample of the shard, in the shard's order (the
    rows a scored shard holds for it); `targets` maps an outcome to the shard that receives its
    samples (an outcome without a target is only counted). Every member of a copied sample is
    copied byte for byte, headers included, in order; a sample that a truncated shard cut short
    is copied with the members that were whole. Raises `ValueError` when the decisions do not
    line up with the shard's samples. Each target appears complete or not at all.
    Returns the number of samples per outcome."""
    writers: dict[str, TarShardWriter] = {}
    counts: dict[str, int] = {o: 0 for o in targets}
    where = os.fspath(path)
    try:
        for o, p in targets.items():
            writers[o] = TarShardWriter(p, overwrite=overwrite)
        pending = iter(decisions)
        for index, sample in enumerate(read_samples(path)):
            decided = next(pending, None)
            if decided is None or decided[0] != sample.key:
                got = "nothing" if decided is None else repr(decided[0])
                raise ValueError(
                    f"the scored rows do not match {where}: sample {index} is {sample.key!r}, "
                    f"the rows give {got}; filter with the scored output of this very shard"
                )
            outcome = decided[1]
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome in writers and sample.members:
                writers[outcome].write(sample)
        if next(pending, None) is not None:
            raise ValueError(f"the scored rows have more samples than {where}")
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()
    return counts


def is_tar_shard(name: str) -> bool:
    """Whether `name` is named like a tar shard (.tar, .tar.gz, .tgz)."""
    return name.lower().endswith(TAR_EXTENSIONS)


def shard_stem(name: str) -> str:
    """`00012.tar` / `00012.tar.gz` -> `00012` (the name an output shard is based on)."""
    lower = name.lower()
    for ext in sorted(TAR_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]
