"""How a data folder becomes examples: the options of ImageFolderExampleGen, and its error.

A leaf module (no TensorFlow, no Beam), so that the configuration can take its
defaults from here without importing either.
"""

import dataclasses
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class IngestOptions:
  """The defaults of `data:` in the pipeline config."""
  eval_percent: int = 20
  num_shards: int = 4
  max_skipped_fraction: float = 0.5
  max_image_pixels: int = 40_000_000
  # Largest file read whole: a photo of 40 MP is well under it as JPEG or PNG.
  max_image_bytes: int = 50 * 2**20
  # TFRecord input only: class names in label order (image folders: the folder names).
  class_names: Tuple[str, ...] = ()


class IngestError(ValueError):
  """What is left after skipping bad files cannot train a model."""
