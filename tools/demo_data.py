"""The built-in data set: scikit-learn's handwritten digits as class-folder PNGs."""

import os
from typing import Dict, Sequence

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

DIGIT_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')


def write_digits(output: str, digits: Sequence[int] = (0, 1), upscale: int = 4,
                 per_class: int = 0) -> Dict[str, int]:
  """Writes <output>/<digit name>/<index>.png (8x8 images upscaled); returns counts.

  `per_class` > 0 keeps only that many images per class. Existing files are
  rewritten with the same content, so the call is idempotent.
  """
  data = load_digits()
  counts = {}
  for digit in digits:
    name = DIGIT_NAMES[digit]
    os.makedirs(os.path.join(output, name), exist_ok=True)
    indices = np.flatnonzero(data.target == digit)
    if per_class:
      indices = indices[:per_class]
    for i in indices:
      pixels = (data.images[i] * (255.0 / 16.0)).astype(np.uint8)
      image = Image.fromarray(pixels).resize((8 * upscale, 8 * upscale), Image.NEAREST)
      image.save(os.path.join(output, name, f'{i:04d}.png'))
    counts[name] = len(indices)
  return counts
