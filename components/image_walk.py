"""Walks files and folders of unlabeled images with ingestion's safe reader.

Used by `transfer-pipeline predict` and the unlabeled ExampleGen of batch inference:
every file named or found below a named folder comes out once, either with its image
bytes or with the reason it was skipped (the same reasons as ingestion's quarantine).
Lazy: memory does not grow with the number of files.
"""

import dataclasses
import os
from typing import Iterable, Iterator, Optional

from components import image_ingest


@dataclasses.dataclass
class ImageFile:
  """One input file: `image` bytes, or `reason` (and `detail`) why it was skipped."""
  path: str
  image: Optional[bytes] = None
  reason: Optional[str] = None
  detail: str = ''


def _files_below(folder: str) -> Iterator[ImageFile]:
  """Every file below `folder` (sorted); hidden, symlinked and unreadable folders are
  reported instead of walked (a symlink is yielded as a file, so that it is checked)."""
  errors = []
  for dirpath, dirnames, filenames in os.walk(folder, onerror=errors.append):
    while errors:
      error = errors.pop(0)
      yield ImageFile(error.filename, reason=f'unreadable folder: {error.strerror}')
    dirnames.sort()
    for name in sorted(filenames):
      yield ImageFile(os.path.join(dirpath, name))
    for name in list(dirnames):
      path = os.path.join(dirpath, name)
      if os.path.islink(path):
        dirnames.remove(name)
        yield ImageFile(path)
      elif name.startswith('.'):
        dirnames.remove(name)
        yield ImageFile(path, reason='hidden folder (not read)')
  for error in errors:
    yield ImageFile(error.filename, reason=f'unreadable folder: {error.strerror}')


def _candidates(inputs: Iterable[str]) -> Iterator[tuple]:
  """(ImageFile, real root) per file: a folder's files are confined to that folder,
  a named file to its own folder."""
  for item in inputs:
    if os.path.isdir(item) and not os.path.islink(item):
      root = os.path.realpath(item)
      for found in _files_below(item):
        yield found, root
    elif os.path.lexists(item):
      yield ImageFile(item), os.path.dirname(os.path.realpath(item))
    else:
      yield ImageFile(item, reason='not found'), ''


def count_files(inputs: Iterable[str]) -> int:
  """How many files `walk_images` will yield (a cheap listing, nothing is read)."""
  return sum(1 for _ in _candidates(inputs))


def walk_images(inputs: Iterable[str], max_pixels: int) -> Iterator[ImageFile]:
  """Files and folders -> ImageFile per file, read by `image_ingest.read_image`."""
  for found, root in _candidates(inputs):
    if found.reason is None:
      try:
        found.image = image_ingest.read_image(found.path, root, max_pixels)
      except image_ingest.Refused as e:
        found.reason, found.detail = e.reason, e.detail
    yield found
