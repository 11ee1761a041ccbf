"""Walks files and folders of unlabeled images with ingestion's safe reader.

Used by `transfer-pipeline predict`: every file named or found below a named folder
comes out once, either with its image bytes or with the reason it was skipped (the same
reasons as ingestion's quarantine). The unlabeled ExampleGen lists the same files
(`image_listing.list_files`) and reads them with the same reader, on Beam.
Lazy: memory does not grow with the number of files.
"""

import dataclasses
import os
from typing import Iterable, Iterator, Optional

from components.example_gen import image_ingest, image_listing


@dataclasses.dataclass
class ImageFile:
  """One input file: `image` bytes, or `reason` (and `detail`) why it was skipped."""
  path: str
  image: Optional[bytes] = None
  reason: Optional[str] = None
  detail: str = ''


def _files_below(folder: str) -> Iterator[ImageFile]:
  """Every file below `folder`, as ingestion lists a class folder (hidden, symlinked and
  unreadable folders are reported instead of walked)."""
  for path, problem in image_listing.walk_files(folder):
    yield ImageFile(path, reason=problem)


def _candidates(inputs: Iterable[str]) -> Iterator[tuple]:
  """(ImageFile, real root, path below it) per file: a folder's files are confined to
  that folder (which may be reached through symlinks), a named file to its own folder."""
  for item in inputs:
    if os.path.isdir(item):  # a folder named directly may be reached through symlinks
      root = os.path.realpath(item)
      for found in _files_below(item):
        yield found, root, os.path.relpath(found.path, item).replace(os.sep, '/')
    elif os.path.lexists(item):
      real = os.path.realpath(item)
      yield ImageFile(item), os.path.dirname(real), os.path.basename(real)
    else:
      yield ImageFile(item, reason='not found'), '', ''


def count_files(inputs: Iterable[str]) -> int:
  """How many files `walk_images` will yield (a cheap listing, nothing is read)."""
  return sum(1 for _ in _candidates(inputs))


def walk_images(inputs: Iterable[str], max_pixels: int, max_side: int = 0) -> Iterator[ImageFile]:
  """Files and folders -> ImageFile per file, read by `image_ingest.read_image` (images
  longer than `max_side` downscaled as ingestion stores them)."""
  for found, root, relpath in _candidates(inputs):
    if found.reason is None:
      try:
        found.image = image_ingest.read_image(found.path, root, max_pixels, max_side=max_side,
                                              relpath=relpath)
      except image_ingest.Refused as e:
        found.reason, found.detail = e.reason, e.detail
    yield found
