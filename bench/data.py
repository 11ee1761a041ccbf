"""Benchmark data: the built-in digits at any size, or a subset of a user folder."""

import os
import shutil
from typing import Dict, Sequence

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from tools.demo_data import DIGIT_NAMES

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')


def _jittered(pixels: np.ndarray, rng: np.random.Generator, upscale: int) -> Image.Image:
  """An 8x8 digit (0..16) upscaled, shifted by up to 2 px, with light noise."""
  image = np.kron(pixels * (255.0 / 16.0), np.ones((upscale, upscale)))
  image = np.roll(image, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
  image = image + rng.normal(0.0, 8.0, image.shape)
  return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def write_digit_images(output: str, train: int, evaluation: int,
                       digits: Sequence[int] = (0, 1), upscale: int = 4,
                       seed: int = 0, suffix: str = '.png') -> Dict[str, int]:
  """Writes <output>/{train,validation}/<digit>/*<suffix>: `train` and `evaluation` images
  in all, split evenly over the digits; source digits repeat with jitter when needed.

  Train and validation images come from disjoint scikit-learn samples (2/3 and 1/3).
  """
  data, rng = load_digits(), np.random.default_rng(seed)
  counts = {}
  for split, total, part in (('train', train, 0), ('validation', evaluation, 1)):
    for digit in digits:
      sources = np.flatnonzero(data.target == digit)
      cut = 2 * len(sources) // 3
      sources = sources[:cut] if part == 0 else sources[cut:]
      folder = os.path.join(output, split, DIGIT_NAMES[digit])
      os.makedirs(folder, exist_ok=True)
      n = total // len(digits)
      for i in range(n):
        image = _jittered(data.images[sources[i % len(sources)]], rng, upscale)
        image.save(os.path.join(folder, f'{i:05d}{suffix}'))
      counts[f'{split}/{DIGIT_NAMES[digit]}'] = n
  return counts


def image_files(folder: str) -> Dict[str, list]:
  """Relative image paths under `folder`, grouped by their parent folder."""
  groups: Dict[str, list] = {}
  for dirpath, _, filenames in os.walk(folder):
    for name in sorted(filenames):
      if name.lower().endswith(IMAGE_SUFFIXES):
        rel = os.path.relpath(os.path.join(dirpath, name), folder)
        groups.setdefault(os.path.dirname(rel), []).append(rel)
  return groups


def count_images(folder: str) -> int:
  return sum(len(files) for files in image_files(folder).values())


def subset_folder(source: str, output: str, fraction: float) -> int:
  """Copies (hard-links where possible) `fraction` of each class folder; returns the count."""
  copied = 0
  for files in image_files(source).values():
    for rel in files[:max(1, int(len(files) * fraction))]:
      target = os.path.join(output, rel)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      try:
        os.link(os.path.join(source, rel), target)
      except OSError:
        shutil.copyfile(os.path.join(source, rel), target)
      copied += 1
  return copied
