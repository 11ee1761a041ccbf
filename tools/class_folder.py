"""Class-folder images in memory, for the tools that need arrays rather than a pipeline
(`calibrate-weights`, `pretrain`). Files are found and checked by the same code as the
pipeline's ingestion (components.example_gen.image_listing, components.example_gen.image_ingest), so stray files are skipped, not fatal."""

import dataclasses
import io
import os
from typing import List

import numpy as np
from PIL import Image

from components.example_gen import image_ingest, image_listing
from components.example_gen.ingest_summary import IngestError
from pipeline.configs import DataConfig


@dataclasses.dataclass
class ClassImages:
  images: np.ndarray        # uint8 [N, S, S, 3]
  labels: np.ndarray        # int32 [N], index into class_names
  class_names: List[str]
  skipped: int              # files that are not readable images


def _decode(data: bytes, image_size: int) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert('RGB').resize((image_size, image_size)))


def load_class_folder(root: str, image_size: int, per_class: int = 0) -> ClassImages:
  """Images of a class-folder tree (optionally train/ + validation/), RGB, resized.

  Unreadable files are skipped and counted; fewer than two classes with images
  raise IngestError. `per_class` > 0 keeps at most that many images per class.
  """
  try:
    listing = image_listing.list_folder(root)
  except image_listing.ListingError as e:
    raise IngestError(str(e)) from e
  class_names, candidates = listing.class_names, listing.candidates
  labels = {name: i for i, name in enumerate(class_names)}
  real_root = os.path.realpath(root)
  images, targets, skipped = [], [], 0
  counts = {name: 0 for name in class_names}
  for cand in candidates:
    if cand.class_name == image_listing.ROOT_CLASS or (
        per_class and counts[cand.class_name] >= per_class):
      continue
    try:
      # relpath under `root` as given: a symlinked data folder is inside itself.
      relpath = os.path.relpath(cand.path, root).replace(os.sep, '/')
      data = image_ingest.read_image(cand.path, real_root, DataConfig.max_image_pixels,
                                     relpath=relpath)
    except ValueError:
      skipped += 1
      continue
    images.append(_decode(data, image_size))
    targets.append(labels[cand.class_name])
    counts[cand.class_name] += 1
  usable = [name for name in class_names if counts[name]]
  if len(usable) < 2:
    raise IngestError(
        f'Need at least two class folders with images in {root}; found '
        f'{usable or "none"} (class folders: {class_names or "none"}, '
        f'{skipped} unreadable files).')
  return ClassImages(np.stack(images), np.asarray(targets, np.int32), class_names, skipped)
