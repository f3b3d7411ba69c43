"""WebDataset tar shards as a source: a brace pattern (`shards/{00000..00499}.tar`), a glob, a
folder of shards (recursive) or one shard; `.tar`, `.tar.gz` / `.tgz`.

Each sample (the members sharing a key, `curate.io.webdataset`) is a row: the image member in
the image column as `{"bytes", "path": member name}`, `__key__`, `__url__` (the shard as
named), and one column per other member extension: text for `json` (the JSON text as
written), `txt` and the other text extensions, bytes for anything else. The image member is
the first of `--image-member`'s extensions that the sample has (default: jpg, jpeg, png,
webp, bmp, gif, tif, tiff, in that order). The other columns are the extensions the first
shard's samples hold. A sample with no image member, one that a truncated shard cut short,
and a shard that cannot be read at all each give a row whose `__reason__` says why (a scoring
run puts it in `deepfake_error`); nothing is skipped. Shards are read member by member: memory holds one sample at a time.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from curate import schema
from curate.io.webdataset import TarSample, is_tar_shard, read_samples, sample_extensions
from curate.sources.base import Batch, Source, SourceError, limited
from curate.sources.files import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

KEY, URL = "__key__", "__url__"
# Why the source itself cannot give a row an image to score. Not an output column: a scoring
# run (`curate.runs.with_scores`) moves it into `deepfake_error` and leaves the row unscored.
REASON = "__reason__"
IMAGE_MEMBER_EXTENSIONS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
# Members stored as text (the `webdataset` library decodes these as text, JSON or numbers).
TEXT_EXTENSIONS = ("txt", "text", "json", "jsn", "cls", "cls2", "class", "caption", "id", "index")
_RANGE = re.compile(r"^(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?$")


def expand_braces(pattern: str) -> list[str]:
    """Brace expansion as the `webdataset` library does it (`braceexpand`): `{00000..00499}`
    (zero padding when a bound has it; `{1..9..2}` steps; `{a..e}` letters) and `{x,y}` lists,
    nested and combined; `{}` and `{x}` stay as written."""
    start = pattern.find("{")
    while start != -1:
        depth, end = 0, -1
        for i in range(start, len(pattern)):
            depth += {"{": 1, "}": -1}.get(pattern[i], 0)
            if depth == 0:
                end = i
                break
        if end == -1:  # unbalanced: the rest is literal
            return [pattern]
        choices = _brace_choices(pattern[start + 1 : end])
        if choices is not None:
            head, tail = pattern[:start], pattern[end + 1 :]
            return [out for c in choices for out in expand_braces(head + c + tail)]
        start = pattern.find("{", start + 1)
    return [pattern]


def _brace_choices(body: str) -> list[str] | None:
    m = _RANGE.match(body)
    if m:
        lo, hi, step = m.group(1), m.group(2), abs(int(m.group(3) or 1)) or 1
        if lo.lstrip("-").isdigit() != hi.lstrip("-").isdigit():
            return None
        if not lo.lstrip("-").isdigit():  # letters
            a, b = ord(lo), ord(hi)
            return [chr(c) for c in range(a, b + (1 if b >= a else -1), step if b >= a else -step)]
        a, b = int(lo), int(hi)
        padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (lo, hi))
        width = max(len(lo), len(hi)) if padded else 0
        values = range(a, b + (1 if b >= a else -1), step if b >= a else -step)
        return [f"{v:0{width}d}" for v in values]
    parts, depth, last = [], 0, 0
    for i, c in enumerate(body):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c == "," and depth == 0:
            parts.append(body[last:i])
            last = i + 1
    parts.append(body[last:])
    return parts if len(parts) > 1 else None


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def shard_paths(source: str | os.PathLike) -> list[str] | None:
    """The tar shards `source` names, in order, or None when it names none of them.

    A brace pattern names every shard in it (all must exist); a glob the tar shards it matches
    (sorted); a folder its tar shards, recursively (sorted by relative path); a `.tar` /
    `.tar.gz` / `.tgz` file itself. Raises `SourceError` for a pattern of shards some of
    which are missing, or one that matches nothing."""
    source = os.fspath(source)
    if os.path.isdir(source):
        found = [
            os.path.join(root, n)
            for root, dirs, files in os.walk(source)
            for n in files
            if is_tar_shard(n) and not n.startswith(".")
        ]
        return sorted(found, key=lambda p: os.path.relpath(p, source).replace(os.sep, "/")) or None
    if os.path.exists(source):
        return [source] if is_tar_shard(source) else None
    expanded = expand_braces(source)
    if len(expanded) == 1 and not _is_glob(source):
        return None
    paths: list[str] = []
    for name in expanded:
        paths.extend(sorted(glob.glob(name)) if _is_glob(name) else [name])
    if not any(is_tar_shard(p) for p in expanded + paths):
        return None
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SourceError(
            f"{len(missing)} of the {len(paths)} shards {source!r} names do not exist "
            f"(first: {missing[0]}); name the ones that do, with a glob or a folder"
        )
    paths = [p for p in paths if is_tar_shard(p)]
    if not paths:
        raise SourceError(f"no tar shards match {source!r}")
    return paths


def parse_image_member(image_member: str | Sequence[str] | None) -> tuple[str, ...]:
    """`--image-member` as a tuple of extensions in order of preference ("png", "jpg,png")."""
    if image_member is None:
        return IMAGE_MEMBER_EXTENSIONS
    parts = image_member.split(",") if isinstance(image_member, str) else list(image_member)
    exts = tuple(p.strip().lstrip(".").lower() for p in parts if p.strip())
    if not exts:
        raise SourceError(
            f"--image-member needs an extension (jpg, png, ...), got {image_member!r}"
        )
    return exts


@dataclass
class ShardedSource(Source):
    """A source made of shards read one after another; `shards` are the same rows, one
    `Source` per shard, for jobs that write one output per shard (`curate.runs`)."""

    shards: list[Source] = field(default_factory=list, repr=False)


def _columns(first_shard: str, image_exts: tuple[str, ...], image_column: str) -> list[str]:
    """The member extensions the first shard's samples hold besides their image member, in
    order of appearance (names the row already uses are left out)."""
    taken = {image_column, KEY, URL, *schema.COLUMN_TYPES, *schema.LIST_COLUMN_TYPES}
    seen: dict[str, None] = {}
    for _, exts in sample_extensions(first_shard):
        chosen = next((e for e in image_exts if e in exts), None)
        for ext in exts:
            if ext != chosen and ext not in taken:
                seen.setdefault(ext, None)
    return list(seen)


def _features(image_column: str, columns: Sequence[str]):
    from datasets import Features, Image, Value

    out = {KEY: Value("string"), URL: Value("string"), image_column: Image()}
    for c in columns:
        out[c] = Value("string") if c in TEXT_EXTENSIONS else Value("binary")
    out[REASON] = Value("string")
    return Features(out)


def _row(
    sample: TarSample,
    url: str,
    image_exts: tuple[str, ...],
    columns: Sequence[str],
    image_column: str,
) -> tuple[dict, set[str]]:
    """One sample as a row, and the extensions it has that no column holds."""
    members = sample.by_extension()
    chosen = next((e for e in image_exts if e in members), None)
    row: dict = {KEY: sample.key, URL: url, image_column: None}
    if chosen is not None:
        row[image_column] = {"bytes": members[chosen], "path": sample.name_of(chosen)}
    for c in columns:
        value = members.get(c) if c != chosen else None
        if value is not None and c in TEXT_EXTENSIONS:
            value = value.decode("utf-8", errors="replace")
        row[c] = value
    reason = sample.error
    if reason is None and chosen is None:
        has = ", ".join(members) or "no members"
        wanted = "/".join(image_exts)
        reason = (
            f"sample {sample.key} of {url} has no image member ({wanted}; it has {has}); "
            "pass --image-member EXT"
        )
    row[REASON] = reason
    extra = set(members) - set(columns) - {chosen}
    return row, extra


def _shard_reader(path: str, url: str, image_exts, columns, image_column: str):
    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        names = [KEY, URL, image_column, *columns, REASON]
        batch: Batch = {n: [] for n in names}
        unstored: set[str] = set()
        for index, sample in enumerate(_opened(read_samples(path), url)):
            if stop is not None and index >= stop:
                break
            if index < start:
                continue
            row, extra = _row(sample, url, image_exts, columns, image_column)
            unstored |= extra
            for n in names:
                batch[n].append(row[n])
            if len(batch[KEY]) == batch_size:
                yield batch
                batch = {n: [] for n in names}
        if batch[KEY]:
            yield batch
        if unstored:
            logger.warning(
                "%s has members (%s) that the first shard's samples do not: they are not "
                "stored in the rows (a filtered tar shard still copies them)",
                url,
                ", ".join(sorted(unstored)),
            )

    return read


def _opened(samples: Iterator[TarSample], url: str) -> Iterator[TarSample]:
    """`samples`, with a shard that cannot be opened (found when reading starts) as one
    sample that says why."""
    try:
        first = next(samples, None)
    except OSError as exc:
        yield TarSample(None, error=f"cannot open shard {url}: {exc.strerror or exc}")
        return
    if first is not None:
        yield first
        yield from samples


def _identity(path: str) -> list:
    try:
        st = os.stat(path)
        return [os.path.abspath(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [os.path.abspath(path), None, None]


def webdataset_source(
    source: str | os.PathLike,
    *,
    image_member: str | Sequence[str] | None = None,
    image_column: str | None = None,
    limit: int | None = None,
    paths: Sequence[str] | None = None,
) -> ShardedSource:
    """The samples of the shards `source` names (`shard_paths`, or `paths` when given), as
    one source whose `shards` read each shard alone. `image_member` picks the image member's
    extension(s); `image_column` names the image column (default "image"); `limit` keeps the
    first rows. Rows per shard are unknown until read (`num_rows` is None without a limit)."""
    from curate.pipeline.decode import stored_path

    where = os.fspath(source)
    names = list(paths) if paths is not None else shard_paths(where)
    if not names:
        raise SourceError(f"{where} names no WebDataset tar shards (.tar, .tar.gz, .tgz)")
    column = image_column or schema.IMAGE
    exts = parse_image_member(image_member)
    columns = _columns(names[0], exts, column)
    features = _features(column, columns)

    def shard(path: str) -> Source:
        url = stored_path(path)
        return Source(
            kind="webdataset",
            location=url,
            image_column=column,
            num_rows=None,
            identity={"kind": "webdataset", "shards": [_identity(path)], "image_member": exts},
            features=features,
            _read=_shard_reader(path, url, exts, columns, column),
        )

    shards = [shard(p) for p in names]

    def read(start: int, stop: int | None, batch_size: int) -> Iterator[Batch]:
        offset = 0  # rows of the shards already passed
        for s in shards:
            count = 0
            for batch in s._read(0, None, batch_size):
                n = len(batch[KEY])
                lo, hi = max(start - offset - count, 0), n
                if stop is not None:
                    hi = min(hi, stop - offset - count)
                count += n
                if lo < hi:
                    yield {k: v[lo:hi] for k, v in batch.items()}
                if stop is not None and offset + count >= stop:
                    return
            offset += count

    return ShardedSource(
        kind="webdataset",
        location=stored_path(where),
        image_column=column,
        num_rows=limited(None, limit),
        identity={
            "kind": "webdataset",
            "shards": [_identity(p) for p in names],
            "image_member": exts,
        },
        features=features,
        _read=read,
        shards=shards if limit is None else [],
    )
