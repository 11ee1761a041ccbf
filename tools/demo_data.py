"""The built-in data set: scikit-learn's handwritten digits as class-folder PNGs."""

import io
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

SPAN_FOLDER = 'span-{}'
SPAN_PATTERN = 'span-{SPAN}'
# The demo's weekly spans: disjoint images, this many of each digit per span; the third
# span's class balance drifts (few of the second digit).
SPAN_PER_CLASS = 50
DRIFTED_SPAN, DRIFTED_COUNT = 3, 5
DIGIT_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')


def _write_if_changed(path: str, image: Image.Image) -> None:
  encoded = io.BytesIO()
  image.save(encoded, format='PNG')
  if os.path.isfile(path):
    with open(path, 'rb') as f:
      if f.read() == encoded.getvalue():
        return
  with open(path, 'wb') as f:
    f.write(encoded.getvalue())


def write_digits(output: str, digits: Sequence[int] = (0, 1), upscale: int = 4,
                 per_class: int = 0, skip: int = 0,
                 per_digit: Optional[Dict[int, int]] = None) -> Dict[str, int]:
  """Writes <output>/<digit name>/<index>.png (8x8 images upscaled); returns counts.

  `per_class` > 0 keeps only that many images per class (`per_digit` overrides it for
  some digits), after the first `skip` of each. A file that already holds the same image
  is left untouched (its mtime too), so a second call changes nothing, and the pipeline's
  ingestion cache still hits.
  """
  data = load_digits()
  counts = {}
  for digit in digits:
    name = DIGIT_NAMES[digit]
    os.makedirs(os.path.join(output, name), exist_ok=True)
    indices = np.flatnonzero(data.target == digit)[skip:]
    keep = (per_digit or {}).get(digit, per_class)
    if keep:
      indices = indices[:keep]
    for i in indices:
      pixels = (data.images[i] * (255.0 / 16.0)).astype(np.uint8)
      image = Image.fromarray(pixels).resize((8 * upscale, 8 * upscale), Image.NEAREST)
      _write_if_changed(os.path.join(output, name, f'{i:04d}.png'), image)
    counts[name] = len(indices)
  return counts


def write_digit_span(output: str, span: int, digits: Sequence[int] = (0, 1),
                     per_class: int = SPAN_PER_CLASS) -> Dict[str, int]:
  """Writes <output>/span-<span>: `per_class` images of each digit that no other span
  has; span 3 has a drifted class balance (only `DRIFTED_COUNT` of the second digit)."""
  return write_digits(os.path.join(output, SPAN_FOLDER.format(span)), digits,
                      per_class=per_class, skip=(span - 1) * per_class,
                      per_digit={digits[1]: DRIFTED_COUNT} if span == DRIFTED_SPAN else None)


def write_digit_spans(output: str, num_spans: int, digits: Sequence[int] = (0, 1),
                      per_class: int = SPAN_PER_CLASS) -> List[Dict[str, int]]:
  """Writes the weekly spans 1 .. `num_spans` (`write_digit_span`); their counts."""
  return [write_digit_span(output, span, digits, per_class) for span in range(1, num_spans + 1)]


def next_span(output: str) -> int:
  """The number after the newest span folder written so far (1 for none)."""
  numbers = [int(name.split('-', 1)[1]) for name in
             (os.listdir(output) if os.path.isdir(output) else [])
             if name.startswith('span-') and name.split('-', 1)[1].isdigit()]
  return max(numbers, default=0) + 1
