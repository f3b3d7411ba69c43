"""Resolve what a user points `curate score` at into a stream of batches, in a stable order.

A SOURCE is one of: a single image file; a folder of images (recursive; .jpg .jpeg .png .webp
.bmp .gif .tif .tiff, hidden files and folders skipped, sorted by relative path); Parquet
file(s) or a glob or a folder of them, with an image column; a directory written by
`Dataset.save_to_disk` / `DatasetDict.save_to_disk`; or a Hugging Face Hub dataset name
(`user/name`, with a split). One kind per module (`files`, `parquet`, `saved`, `hub`), one
interface (`base.Source`), one resolver (`resolve.resolve_source`). A source can start at any
row, so an interrupted run resumes without re-reading what it has done.
"""

from curate.sources.base import Batch, Source, SourceError
from curate.sources.files import IMAGE_EXTENSIONS, list_images, path_list_source
from curate.sources.parquet import PARQUET_EXTENSIONS
from curate.sources.resolve import resolve_source

__all__ = [
    "IMAGE_EXTENSIONS",
    "PARQUET_EXTENSIONS",
    "Batch",
    "Source",
    "SourceError",
    "list_images",
    "path_list_source",
    "resolve_source",
]
